import { checkDeclaredLength, SizeLimit } from '../http.ts';
import { defineRoute, ref } from '../route.ts';

/** Uploads: raw bodies (code archives, model files) streamed to the controller's storage. */
export const uploadRoutes = [
  defineRoute({
    id: 'createUpload',
    method: 'POST',
    path: '/api/v1/uploads',
    tag: 'uploads',
    summary: 'Upload a file (a .tar.gz of code, or a model file)',
    description: 'The raw body is streamed to storage, up to the server\'s upload limit (413 beyond). Use the answered id as `{"upload": "<id>"}` in a version\'s source or files. An upload no version names is deleted once `PORTICO_UPLOAD_GRACE_SECONDS` old (a day by default); one that versions named, once the last of them is deleted.',
    params: {},
    rawBody: { contentType: 'application/octet-stream', description: 'The file\'s bytes (any media type).' },
    response: { status: 201, description: 'The stored upload.', schema: ref('Upload') },
    errors: ['PAYLOAD_TOO_LARGE'],
    handler: async ({ control, req, actor, limits }) => {
      checkDeclaredLength(req, limits.maxUploadBytes);
      const limit = new SizeLimit(limits.maxUploadBytes);
      req.on('error', (err) => limit.destroy(err));
      req.pipe(limit);
      try {
        const upload = await control.createUpload(limit, actor);
        return { status: 201, body: upload };
      } catch (err) {
        if (limit.exceeded) throw limit.error();
        throw err;
      } finally {
        // Whatever createUpload left unread must not keep the request hanging. Past the limit
        // the 413 closes the connection instead of reading the rest.
        if (!req.readableEnded) {
          req.unpipe(limit);
          if (!limit.exceeded) req.resume();
        }
        limit.destroy();
      }
    },
  }),
];
