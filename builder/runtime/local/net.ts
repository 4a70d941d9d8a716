import { connect, createServer } from 'node:net';

/** Resolves true when a TCP connection to `host:port` succeeds within `timeoutMs`, else false. */
export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Whether `host:port` can be bound right now (nobody listens there). */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function bindAny(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A port that was free on `host` a moment ago and is not in `avoid`: from `range` (inclusive) if
 * given, else one the kernel picks. Another process may still take it before the replica binds
 * it; readiness checks whose socket answers, so that race is seen, not routed.
 */
export async function pickPort(
  host: string,
  avoid: ReadonlySet<number>,
  range?: { readonly min: number; readonly max: number },
): Promise<number> {
  if (range) {
    const size = range.max - range.min + 1;
    const start = Math.floor(Math.random() * size);
    for (let i = 0; i < size; i++) {
      const port = range.min + ((start + i) % size);
      if (!avoid.has(port) && (await portFree(host, port))) return port;
    }
    throw new Error(`no free port in ${range.min}-${range.max} on ${host}`);
  }
  for (let i = 0; i < 100; i++) {
    const port = await bindAny(host);
    if (!avoid.has(port)) return port;
  }
  throw new Error(`no free port on ${host}`);
}

/** `tcpProbe` of an address `host:port` (an IPv6 host in brackets or not). */
export function tcpProbeAddress(address: string, timeoutMs: number): Promise<boolean> {
  const i = address.lastIndexOf(':');
  return tcpProbe(address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1)), timeoutMs);
}
