import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EndpointSpec } from '../runtime.ts';

/** What the local runtime records about one running replica process. */
export interface ReplicaRecord {
  readonly id: string;
  /** Process (and process group) id of the replica's leader. */
  readonly pid: number;
  /** `/proc/<pid>/stat` start time: a live pid with another start time is someone else. */
  readonly startTime: string | null;
  readonly port: number;
  /** Address it was published at, if it had become ready. */
  readonly address: string | null;
  readonly specHash: string;
  readonly restarts: number;
  readonly startedAt: number;
}

/** One endpoint: its last ensured spec, the next replica number and its replica processes. */
export interface EndpointRecord {
  readonly spec: EndpointSpec;
  readonly nextId: number;
  readonly replicas: readonly ReplicaRecord[];
}

/** The state file: enough for a new runtime on the same data directory to adopt replicas. */
export interface StateFile {
  readonly version: 1;
  readonly endpoints: Readonly<Record<string, EndpointRecord>>;
}

/** Reads the state file; a missing or unreadable file is an empty state. */
export function readState(path: string): StateFile {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<StateFile>;
    if (parsed.version === 1 && parsed.endpoints && typeof parsed.endpoints === 'object') {
      return { version: 1, endpoints: parsed.endpoints };
    }
  } catch {
    // missing or torn: nothing to adopt
  }
  return { version: 1, endpoints: {} };
}

let tmpCounter = 0;

/**
 * Writes the state atomically (temporary file, then rename), mode 0600 since specs carry the
 * project's environment, secrets included.
 */
export function writeState(path: string, state: StateFile): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${++tmpCounter}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(state, null, 1), { mode: 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true }); // a failed write (disk full) leaves no temporary file behind
    throw err;
  }
}
