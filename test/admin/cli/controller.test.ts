// `portico controller` as an operator starts it: a child process, its exit code and what it says.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../helpers/poll.ts';
import { runCli } from '../harness.ts';

t.test('portico controller whose Redis does not answer exits 1 naming Redis and where it is, not a bare "Command timed out"', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-controller-cli-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  // Nothing listens there.
  const redisPort = await freePort();
  const r = await runCli(['controller'], {
    env: {
      PORTICO_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      PORTICO_DATA_DIR: dataDir,
      PORTICO_ADMIN_PORT: String(await freePort()),
      PORTICO_ADMIN_TOKEN: 'c'.repeat(40),
    },
  });
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, new RegExp(`^portico: cannot start: Redis at 127\\.0\\.0\\.1:${redisPort} does not answer \\(Command timed out\\)`, 'm'), r.stderr);
});
