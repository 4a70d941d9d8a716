// The browser code is plain JavaScript with JSDoc types (no build step): it is typechecked
// strictly against the DOM library and uPlot's declarations, as the server code is by `tsc -p .`.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../harness.ts';

t.test('admin/ui/static/js typechecks (checkJs, strict)', async (t) => {
  // typescript's lib/tsc.js (an ES module, run by Node 24) rather than the extensionless bin
  // script, which tap's child-process hooks would load as CommonJS.
  const tsc = join(ROOT, 'node_modules', 'typescript', 'lib', 'tsc.js');
  const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'node'), [tsc, '-p', join(ROOT, 'admin', 'ui', 'tsconfig.json')], { encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, `tsc: ${r.stdout}${r.stderr}`);
});
