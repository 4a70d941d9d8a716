import t from 'tap';
import { readFileSync } from 'node:fs';
import { loadConfig, ConfigError, VARIABLES } from '../../common/config.ts';

t.test('defaults match the contract', async (t) => {
  const c = loadConfig({});
  t.equal(c.host, '127.0.0.1');
  t.equal(c.gatewayPort, 8080);
  t.equal(c.adminPort, 8081);
  t.equal(c.metricsPort, 9464);
  t.equal(c.maxBodyBytes, 64 * 1024 * 1024);
  t.equal(c.drainSeconds, 30);
  t.equal(c.flipAckMs, 2000);
  t.equal(c.redisUrl, undefined);
  t.equal(c.gatewayUrl, 'http://127.0.0.1:8080');
  t.equal(c.kubeNamespace, 'portico-{owner}-{project}');
  t.ok(Object.isFrozen(c));
});

t.test('environment overrides defaults', async (t) => {
  const c = loadConfig({
    PORTICO_GATEWAY_PORT: '9000',
    PORTICO_REDIS_URL: 'redis://127.0.0.1:6390/',
    PORTICO_TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.1,::1',
  });
  t.equal(c.gatewayPort, 9000);
  t.equal(c.redisUrl, 'redis://127.0.0.1:6390');
  t.same(c.trustedProxies, ['10.0.0.0/8', '192.168.1.1', '::1']);
  t.equal(c.gatewayUrl, 'http://127.0.0.1:9000');
});

t.test('every bad variable is reported at once', async (t) => {
  const err = t.throws(() =>
    loadConfig({
      PORTICO_GATEWAY_PORT: 'eighty',
      PORTICO_ADMIN_PORT: '70000',
      PORTICO_REDIS_URL: 'http://x',
      PORTICO_TRUSTED_PROXIES: '10.0.0.0/99',
      PORTICO_LOG_LEVEL: 'loud',
      PORTICO_GATEWAY_PROT: '1',
    }),
  ) as unknown as ConfigError;
  t.type(err, ConfigError);
  t.equal(err.problems.length, 6);
  for (const name of ['PORTICO_GATEWAY_PORT', 'PORTICO_ADMIN_PORT', 'PORTICO_REDIS_URL', 'PORTICO_TRUSTED_PROXIES', 'PORTICO_LOG_LEVEL', 'PORTICO_GATEWAY_PROT']) {
    t.match(err.message, name);
  }
});

t.test('registry credentials: a username and a password together, for a registry', async (t) => {
  t.equal(loadConfig({}).registryAuth, undefined);
  const c = loadConfig({ PORTICO_REGISTRY: 'reg.example:5000/ml', PORTICO_REGISTRY_USERNAME: 'bot', PORTICO_REGISTRY_PASSWORD: 'tok' });
  t.same(c.registryAuth, { username: 'bot', password: 'tok' });
  t.ok(Object.isFrozen(c.registryAuth));
  const half = t.throws(() => loadConfig({ PORTICO_REGISTRY: 'reg.example', PORTICO_REGISTRY_USERNAME: 'bot' })) as unknown as ConfigError;
  t.same(half.problems, ['PORTICO_REGISTRY_PASSWORD: must be set too (registry credentials are a username and a password)']);
  const other = t.throws(() => loadConfig({ PORTICO_REGISTRY: 'reg.example', PORTICO_REGISTRY_PASSWORD: 'tok' })) as unknown as ConfigError;
  t.same(other.problems, ['PORTICO_REGISTRY_USERNAME: must be set too (registry credentials are a username and a password)']);
  const nowhere = t.throws(() => loadConfig({ PORTICO_REGISTRY_USERNAME: 'bot', PORTICO_REGISTRY_PASSWORD: 'tok' })) as unknown as ConfigError;
  t.match(nowhere.problems, [/^PORTICO_REGISTRY_USERNAME: credentials are for PORTICO_REGISTRY/]);
  t.notOk(nowhere.message.includes('tok'), 'the password is never in a message');
  t.same(loadConfig({ PORTICO_TARGETS_FILE: '/etc/portico/targets.json', PORTICO_REGISTRY_USERNAME: 'bot', PORTICO_REGISTRY_PASSWORD: 'tok' }).registryAuth, { username: 'bot', password: 'tok' }, 'or for the registries of a targets file');
});

t.test('the README documents every variable', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const name of Object.keys(VARIABLES)) t.match(readme, `\`${name}\``, `${name} is in README.md`);
});
