import { spawn } from 'node:child_process';
import t from 'tap';
import { groupAlive, groupListeners, procAvailable, processAlive, processStartTime, signalGroup } from '../../../../builder/runtime/local/proc.ts';
import { freePort, waitFor } from '../../../helpers/poll.ts';

t.test('start time, liveness and process groups of a real process', { skip: !procAvailable && 'needs /proc' }, async (t) => {
  const child = spawn('/bin/sh', ['-c', 'sleep 30 & wait'], { detached: true, stdio: 'ignore' });
  const pid = child.pid!;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.teardown(() => { signalGroup(pid, 'SIGKILL'); });
  const start = processStartTime(pid);
  t.match(start, /^\d+$/);
  t.ok(processAlive(pid, start));
  t.notOk(processAlive(pid, String(Number(start) + 1)), 'another start time is another process');
  t.ok(await waitFor(() => groupAlive(pid)));
  t.ok(signalGroup(pid, 'SIGTERM'));
  await exited;
  await waitFor(() => !groupAlive(pid), { what: 'group gone (the backgrounded sleep too)' });
  t.notOk(processAlive(pid, start));
  t.equal(processStartTime(pid), null);
});

t.test('groupListeners tells whose socket listens on a port', { skip: !procAvailable && 'needs /proc' }, async (t) => {
  const port = await freePort();
  // A listener inside a shell's process group (a grandchild of the group leader).
  const owner = spawn('/bin/sh', ['-c', `"${process.execPath}" -e "require('net').createServer().listen(${port}, '127.0.0.1')"; true`], { detached: true, stdio: 'ignore' });
  const other = spawn('/bin/sh', ['-c', 'sleep 30'], { detached: true, stdio: 'ignore' });
  t.teardown(() => {
    signalGroup(owner.pid!, 'SIGKILL');
    signalGroup(other.pid!, 'SIGKILL');
  });
  const mine = await waitFor(() => {
    const l = groupListeners(owner.pid!, port);
    return l?.ports.has(port) ? l : undefined;
  }, { what: 'the listener' });
  t.equal(mine.portOwnedElsewhere, false);
  const theirs = groupListeners(other.pid!, port);
  t.same([...theirs!.ports], [], 'the other group listens on nothing');
  t.equal(theirs!.portOwnedElsewhere, true, 'and sees the port held by someone else');
});
