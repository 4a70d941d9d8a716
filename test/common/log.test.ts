import t from 'tap';
import { spawn } from 'node:child_process';
import { createLogger } from '../../common/log.ts';

t.test('one JSON line per message at or above the level', async (t) => {
  const lines: string[] = [];
  const log = createLogger('gateway', 'warn', (l) => lines.push(l));
  log.info('not shown');
  log.warn('shown', { id: 'x' });
  t.equal(lines.length, 1);
  t.match(JSON.parse(lines[0] as string), { level: 'warn', component: 'gateway', msg: 'shown', id: 'x' });
});

t.test('stderr whose reader has gone (EPIPE: a log shipper or journald restarted) does not end the process', async (t) => {
  const logModule = new URL('../../common/log.ts', import.meta.url).href;
  const script = `
    import { createLogger } from ${JSON.stringify(logModule)};
    const log = createLogger('gateway', 'info');
    let n = 0;
    const timer = setInterval(() => {
      log.info('line', { n: n++ });
      if (n === 50) { clearInterval(timer); process.stdout.write('alive\\n'); }
    }, 5);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The reading end of the child's stderr closes at once.
  child.stderr.destroy();
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  t.equal(out, 'alive\n', 'the process went on logging and working');
  t.equal(code, 0);
});
