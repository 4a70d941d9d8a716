import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * Linux process facts read from /proc: start times (to tell a live replica from a recycled pid),
 * process groups (a replica is a group: `sh -c` and what it starts) and which TCP ports a group
 * listens on (to tell whose socket answers on a port). Every function degrades to "unknown"
 * (`null`) where /proc is missing, and the runtime then falls back to plain signals and connects.
 */

/** True when /proc exposes processes and TCP sockets (Linux). */
export const procAvailable: boolean = (() => {
  try {
    readFileSync('/proc/self/stat', 'utf8');
    readFileSync('/proc/net/tcp', 'utf8');
    return true;
  } catch {
    return false;
  }
})();

interface Stat {
  readonly state: string;
  readonly pgrp: number;
  readonly startTime: string;
}

function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), rest[2] field 5 (pgrp), rest[19] field 22 (starttime).
  const state = rest[0];
  const pgrp = Number(rest[2]);
  const startTime = rest[19];
  if (state === undefined || startTime === undefined || !Number.isInteger(pgrp)) return null;
  return { state, pgrp, startTime };
}

/** The start time of `pid` (clock ticks since boot, as a string), or `null` if unknown/gone. */
export function processStartTime(pid: number): string | null {
  return readStat(pid)?.startTime ?? null;
}

/**
 * Whether `pid` runs and is the same process as the one recorded with `startTime` (a pid may be
 * reused after the replica died). A zombie counts as gone. Without /proc, only `kill(pid, 0)`.
 */
export function processAlive(pid: number, startTime: string | null): boolean {
  if (procAvailable) {
    const st = readStat(pid);
    if (!st || st.state === 'Z') return false;
    return startTime === null || st.startTime === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Live (non-zombie) members of process group `pgid`; `null` without /proc. */
export function groupMembers(pgid: number): number[] | null {
  if (!procAvailable) return null;
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return null;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const st = readStat(pid);
    if (st && st.pgrp === pgid && st.state !== 'Z') out.push(pid);
  }
  return out;
}

/** Whether any process of group `pgid` is still alive (zombies excluded where /proc tells). */
export function groupAlive(pgid: number): boolean {
  const members = groupMembers(pgid);
  if (members) return members.length > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sends `signal` to the whole group `pgid`; false if no process of it exists (zombies count). */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Listening TCP sockets: inode -> port, from /proc/net/tcp and tcp6 (state 0A = LISTEN). */
function listeningInodes(): Map<string, number> {
  const out = new Map<string, number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const local = f[1];
      const inode = f[9];
      if (f[3] !== '0A' || !local || !inode || inode === '0') continue;
      const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      if (Number.isInteger(port)) out.set(inode, port);
    }
  }
  return out;
}

/** Whether anything listens on TCP `port` (any address); `null` without /proc. */
export function portListening(port: number): boolean | null {
  if (!procAvailable) return null;
  for (const p of listeningInodes().values()) if (p === port) return true;
  return false;
}

/**
 * Who listens on TCP ports, restricted to what matters for a replica: the set of ports the
 * processes of group `pgid` listen on, and whether `port` has a listener outside that group.
 * `null` without /proc (then nobody can tell).
 */
export function groupListeners(pgid: number, port: number): { ports: Set<number>; portOwnedElsewhere: boolean } | null {
  const members = groupMembers(pgid);
  if (!members) return null;
  const inodes = listeningInodes();
  const ports = new Set<number>();
  const ownInodes = new Set<string>();
  for (const pid of members) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (!m?.[1]) continue;
      const p = inodes.get(m[1]);
      if (p !== undefined) {
        ports.add(p);
        ownInodes.add(m[1]);
      }
    }
  }
  let portOwnedElsewhere = false;
  for (const [inode, p] of inodes) {
    if (p === port && !ownInodes.has(inode)) portOwnedElsewhere = true;
  }
  return { ports, portOwnedElsewhere };
}
