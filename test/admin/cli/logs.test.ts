import t from 'tap';
import type { Test } from 'tap';
import { waitFor } from '../../helpers/poll.ts';
import { cliEnv, createDeployment, readyVersion, REF, runCli, startApi } from '../harness.ts';

const DSCOPE = ['--owner', 'acme', '--project', 'mnist', '--deployment', 'web'];

t.test('logs prints lines, filtered and as --json', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ref = { ...REF, version: 'v1' };
  api.fake.appendLog(ref, 'predict', 'first', { at: Date.UTC(2024, 0, 1) });
  api.fake.appendLog(ref, 'predict', 'oops', { at: Date.UTC(2024, 0, 1, 0, 0, 1), stream: 'stderr', replica: 'predict-1' });
  const r = await runCli(['logs', 'v1', 'predict', ...DSCOPE], { env: cliEnv(api) });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '2024-01-01T00:00:00.000Z predict-0 first\n2024-01-01T00:00:01.000Z predict-1 [stderr] oops\n');
  const tail = await runCli(['logs', 'v1', 'predict', '--tail', '1', '--json', ...DSCOPE], { env: cliEnv(api) });
  t.same(JSON.parse(tail.stdout), { at: Date.UTC(2024, 0, 1, 0, 0, 1), replica: 'predict-1', stream: 'stderr', line: 'oops' });
  const missing = await runCli(['logs', 'v1', 'nope', ...DSCOPE], { env: cliEnv(api) });
  t.equal(missing.code, 1);
  t.match(missing.stderr, /^portico logs: NOT_FOUND \(404\): Version v1 has no endpoint "nope"\.\n$/);
  const usage = await runCli(['logs', 'v1', ...DSCOPE], { env: cliEnv(api) });
  t.equal(usage.code, 2);
  t.match(usage.stderr, /the ENDPOINT is required/);
});

t.test('logs -f streams new lines until Ctrl-C, then the server stops following', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ref = { ...REF, version: 'v1' };
  api.fake.appendLog(ref, 'predict', 'before', { at: 1 });
  let out = '';
  let child: import('node:child_process').ChildProcess | undefined;
  const run = runCli(['logs', '-f', 'v1', 'predict', '--tail', '1', ...DSCOPE], {
    env: cliEnv(api),
    onStdout: (s, c) => {
      out = s;
      child = c;
    },
  });
  await waitFor(() => out.includes('before'), { what: 'the backlog line' });
  await waitFor(() => api.fake.followers === 1, { what: 'the follower' });
  api.fake.appendLog(ref, 'predict', 'live line', { at: 2 });
  await waitFor(() => out.includes('live line'), { what: 'the live line' });
  child!.kill('SIGINT');
  const r = await run;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '1970-01-01T00:00:00.001Z predict-0 before\n1970-01-01T00:00:00.002Z predict-0 live line\n');
  await waitFor(() => api.fake.followers === 0, { what: 'the server to stop following' });
});

/** Starts `portico logs -f v1 predict` against a fresh API and waits until it follows. */
async function following(t: Test) {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  api.fake.appendLog({ ...REF, version: 'v1' }, 'predict', 'before', { at: 1 });
  let out = '';
  const run = runCli(['logs', '-f', 'v1', 'predict', ...DSCOPE], { env: cliEnv(api), onStdout: (s) => (out = s) });
  await waitFor(() => out.includes('before'), { what: 'the backlog line' });
  await waitFor(() => api.fake.followers === 1, { what: 'the follower' });
  return { api, run };
}

t.test('logs -f says so and exits 1 when the server ends the stream (the controller stops)', async (t) => {
  const { api, run } = await following(t);
  api.fake.endFollows();
  const r = await run;
  t.equal(r.code, 1);
  t.equal(r.stdout, '1970-01-01T00:00:00.001Z predict-0 before\n');
  t.match(r.stderr, /^portico logs: the log stream ended unexpectedly \(the admin API closed it: is it stopping\?\)\n$/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('logs -f says so and exits 1 when the connection drops (the admin server shuts down)', async (t) => {
  const { api, run } = await following(t);
  await api.close();
  const r = await run;
  t.equal(r.code, 1);
  t.equal(r.stdout, '1970-01-01T00:00:00.001Z predict-0 before\n');
  t.match(r.stderr, /^portico logs: the log stream ended unexpectedly: /);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('logs --until: only lines before a time (parsed as --since), refused with --follow', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ref = { ...REF, version: 'v1' };
  api.fake.appendLog(ref, 'predict', 'old', { at: Date.UTC(2024, 0, 1) });
  api.fake.appendLog(ref, 'predict', 'new', { at: Date.now() });
  const iso = await runCli(['logs', 'v1', 'predict', '--until', '2024-01-02T00:00:00Z', ...DSCOPE], { env: cliEnv(api) });
  t.equal(iso.code, 0, iso.stderr);
  t.equal(iso.stdout, '2024-01-01T00:00:00.000Z predict-0 old\n');
  const ago = await runCli(['logs', 'v1', 'predict', '--until', '1h', ...DSCOPE], { env: cliEnv(api) });
  t.equal(ago.code, 0, ago.stderr);
  t.equal(ago.stdout, '2024-01-01T00:00:00.000Z predict-0 old\n');
  const window = await runCli(['logs', 'v1', 'predict', '--since', '2023-12-31T00:00:00Z', '--until', '2024-01-02T00:00:00Z', ...DSCOPE], { env: cliEnv(api) });
  t.equal(window.stdout, '2024-01-01T00:00:00.000Z predict-0 old\n');
  const empty = await runCli(['logs', 'v1', 'predict', '--since', '1h', '--until', '2h', ...DSCOPE], { env: cliEnv(api) });
  t.equal(empty.code, 2);
  t.match(empty.stderr, /^portico logs: --since must be before --until\n/);
  const bad = await runCli(['logs', 'v1', 'predict', '--until', 'later', ...DSCOPE], { env: cliEnv(api) });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /^portico logs: --until must be a duration like 10m or an ISO time \(got "later"\)\n/);
  const follow = await runCli(['logs', '-f', 'v1', 'predict', '--until', '1h', ...DSCOPE], { env: cliEnv(api) });
  t.equal(follow.code, 2);
  t.match(follow.stderr, /^portico logs: --until cannot be combined with --follow \(a followed log has no end\)\n/);
  t.equal(api.fake.followers, 0, 'nothing was followed');
});
