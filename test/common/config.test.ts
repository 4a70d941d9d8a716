import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
      PORTICO_HOST: '[::1]',
    }),
  ) as unknown as ConfigError;
  t.type(err, ConfigError);
  t.equal(err.problems.length, 7);
  for (const name of ['PORTICO_GATEWAY_PORT', 'PORTICO_ADMIN_PORT', 'PORTICO_REDIS_URL', 'PORTICO_TRUSTED_PROXIES', 'PORTICO_LOG_LEVEL', 'PORTICO_GATEWAY_PROT']) {
    t.match(err.message, name);
  }
  t.match(err.message, 'PORTICO_HOST="[::1]": write an IPv6 address without brackets (::1)');
  t.equal(loadConfig({ PORTICO_HOST: '::1' }).host, '::1');
});

t.test('PORTICO_HOST with a port (host:port, a URL) is refused at once, naming where the port goes', async (t) => {
  for (const host of ['0.0.0.0:8080', 'localhost:8080', 'http://127.0.0.1']) {
    const err = t.throws(() => loadConfig({ PORTICO_HOST: host })) as unknown as ConfigError;
    t.type(err, ConfigError, host);
    t.match(err.message, `PORTICO_HOST=${JSON.stringify(host)}: expected a host name or IP address`);
  }
  t.match(t.throws(() => loadConfig({ PORTICO_HOST: '0.0.0.0:8080' })) as unknown as ConfigError, { message: /without a port \(PORTICO_GATEWAY_PORT, PORTICO_ADMIN_PORT, PORTICO_METRICS_PORT set the ports\)/ });
  for (const host of ['::', '::1', 'fe80::1%eth0', '0.0.0.0', 'gateway.internal']) t.equal(loadConfig({ PORTICO_HOST: host }).host, host);
});

t.test('PORTICO_ADMIN_TOKEN must be a token a Bearer header can carry; the message never shows it', async (t) => {
  for (const token of ['s3cret!token@2026', 'two words', 'p#ss', 'x'.repeat(4097), 'naïve-token']) {
    const err = t.throws(() => loadConfig({ PORTICO_ADMIN_TOKEN: token })) as unknown as ConfigError;
    t.type(err, ConfigError, token);
    t.match(err.message, /PORTICO_ADMIN_TOKEN: /);
    t.notMatch(err.message, token.slice(0, 20), 'the value is not printed');
  }
  for (const token of ['ptk_VV2dWmxWdufsZxexdpwTdGww8U1Tu9h4GvHhjUxaqV4', 'a+b/c=', 'e'.repeat(4096), 'with.dots_and~tilde-1']) {
    t.equal(loadConfig({ PORTICO_ADMIN_TOKEN: token }).adminToken, token);
  }
});

t.test('what a starting command uses is checked up front, in the same message as the rest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'a-file');
  writeFileSync(file, '{}');
  const use = { ports: ['PORTICO_GATEWAY_PORT', 'PORTICO_ADMIN_PORT', 'PORTICO_METRICS_PORT'], files: ['PORTICO_DATA_DIR', 'PORTICO_ACCESS_LOG', 'PORTICO_TARGETS_FILE', 'PORTICO_KUBECONFIG'] } as const;
  const err = t.throws(() =>
    loadConfig({
      PORTICO_LOG_LEVEL: 'loud',
      PORTICO_GATEWAY_PORT: '9000',
      PORTICO_ADMIN_PORT: '9000',
      PORTICO_DATA_DIR: file,
      PORTICO_ACCESS_LOG: join(file, 'access.log'),
      PORTICO_TARGETS_FILE: join(dir, 'missing.json'),
      PORTICO_KUBECONFIG: dir,
    }, use),
  ) as unknown as ConfigError;
  t.type(err, ConfigError);
  t.same(err.problems.slice().sort(), [
    'PORTICO_LOG_LEVEL="loud": expected one of debug, info, warn, error',
    'PORTICO_GATEWAY_PORT, PORTICO_ADMIN_PORT: the same port 9000 (each needs its own)',
    `PORTICO_DATA_DIR=${file}: not a directory`,
    `PORTICO_ACCESS_LOG=${join(file, 'access.log')}: ${file} is not a directory`,
    `PORTICO_TARGETS_FILE=${join(dir, 'missing.json')}: does not exist`,
    `PORTICO_KUBECONFIG=${dir}: not a file`,
  ].sort());

  // What works: folders created on the way, a file that exists, port 0 twice (free ports).
  const ok = loadConfig({
    PORTICO_GATEWAY_PORT: '0',
    PORTICO_ADMIN_PORT: '0',
    PORTICO_DATA_DIR: join(dir, 'new', 'data'),
    PORTICO_ACCESS_LOG: join(dir, 'logs', 'deep', 'access.log'),
    PORTICO_TARGETS_FILE: file,
    PORTICO_KUBECONFIG: file,
  }, use);
  t.equal(ok.gatewayPort, 0);
  for (const log of ['stdout', 'off']) t.equal(loadConfig({ PORTICO_ACCESS_LOG: log }, use).accessLog, log, `${log} is not a path`);
  // Without `use` (the operator commands), nothing on disk is looked at.
  t.equal(loadConfig({ PORTICO_KUBECONFIG: dir }).kubeconfig, dir);
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
