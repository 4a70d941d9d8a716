#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 node --max-semi-space-size=16
// The line above is how Portico runs (npx portico, npm start; the Dockerfile sets the same through
// ENV and NODE_OPTIONS): glibc keeps at most two malloc arenas and returns large blocks (scrypt's
// 16 MiB) at once, and V8's young generation stays at 2 x 16 MiB instead of growing to 2 x 64 MiB.
// Measured in docs/benchmarks.md: the same throughput, a fraction of the memory.
import { holdStopSignals, releaseStopSignals } from '../admin/cli/signals.ts';

// Before the modules load (a second or more): see `holdStopSignals`.
holdStopSignals();
const { main } = await import('../admin/cli/main.ts');
process.exitCode = await main(process.argv.slice(2), process.env);
await releaseStopSignals();
