import t from 'tap';
import { endpointSpec } from '../../builder/reconciler.ts';
import type { Version, VersionEndpoint } from '../../builder/store/store.ts';

const endpoint: VersionEndpoint = {
  name: 'predict',
  definition: { name: 'predict', command: { kind: 'shell', command: 'serve' }, port: 8000 },
  replicas: 2,
  enabled: true,
  timeoutSeconds: null,
  maxBodyBytes: null,
  files: [],
};

function version(over: Partial<Version> = {}): Version {
  return {
    owner: 'acme', project: 'nlp', deployment: 'web', name: 'v1', status: 'ready', createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z',
    enabled: true, source: { path: '/src' }, environment: { MODEL: 'small', API_KEY: 'k-1' }, inheritEnvironment: true, endpoints: [endpoint], codeDir: '/code', ...over,
  };
}

t.test('endpointSpec: secret names go with the spec, only those the environment has', async (t) => {
  const spec = endpointSpec(version({ secretEnvironment: ['API_KEY', 'REMOVED'] }), endpoint);
  t.same(spec.secretEnv, ['API_KEY']);
  t.same(spec.env, { MODEL: 'small', API_KEY: 'k-1', VH_DEFAULT_PREFIX: '/acme/nlp/web/v1/predict' }, 'the values stay in env (the runtime decides how to pass them)');
  const inherited = endpointSpec(version({ secretEnvironment: ['constructor', 'toString'], environment: { toString: 's' } }), endpoint);
  t.same(inherited.secretEnv, ['toString'], 'a name Object.prototype has is not taken for one the environment has');
});

t.test('endpointSpec: without secrets the spec (and its hash, which restarts replicas) is what it was', async (t) => {
  const plain = endpointSpec(version(), endpoint);
  t.notOk('secretEnv' in plain, 'no secretEnv field');
  t.equal(endpointSpec(version({ secretEnvironment: [] }), endpoint).specHash, plain.specHash, 'an empty list changes nothing');
  t.not(endpointSpec(version({ secretEnvironment: ['API_KEY'] }), endpoint).specHash, plain.specHash, 'a secret changes how replicas get it: a new hash');
});
