// nginx in the benchmark, when installed (Debian's `nginx`): as the fast upstream returning a
// small JSON, and as contender (d), a reverse proxy with upstream keep-alive. One worker each,
// everything (pid, logs, temp files) in a private directory, in the foreground.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, versionOf, type Proc, type Procs } from './procs.ts';

/** The body every upstream answers with. */
export const UPSTREAM_BODY = '{"prediction":7,"confidence":0.93}';

/** Whether nginx is installed. */
export function hasNginx(): boolean {
  return hasCommand('nginx') || hasCommand('/usr/sbin/nginx');
}

/** `nginx/1.22.1`, or `''` when absent. */
export function nginxVersion(): string {
  return hasNginx() ? versionOf(nginxBinary(), ['-v']).replace(/^nginx version:\s*/, '') : '';
}

function nginxBinary(): string {
  return hasCommand('nginx') ? 'nginx' : '/usr/sbin/nginx';
}

function common(dir: string, name: string): string {
  const tmp = join(dir, `${name}-tmp`);
  mkdirSync(tmp, { recursive: true });
  return `worker_processes 1;
daemon off;
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}-error.log`)} warn;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
`;
}

function run(procs: Procs, dir: string, name: string, conf: string, cpus: string | undefined): Proc {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, conf);
  return procs.start(`nginx ${name}`, nginxBinary(), ['-e', join(dir, `${name}-error.log`), '-p', dir, '-c', file], { cpus });
}

/** nginx answering every request on `127.0.0.1:port` with `UPSTREAM_BODY` (application/json). */
export function startNginxUpstream(procs: Procs, dir: string, port: number, cpus?: string): Proc {
  const conf = `${common(dir, 'upstream')}
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      default_type application/json;
      return 200 '${UPSTREAM_BODY}';
    }
  }
}
`;
  return run(procs, dir, 'upstream', conf, cpus);
}

/** nginx proxying `127.0.0.1:port` to `upstream` (host:port) over kept-alive HTTP/1.1 connections. */
export function startNginxProxy(procs: Procs, dir: string, port: number, upstream: string, cpus?: string): Proc {
  const conf = `${common(dir, 'proxy')}
  upstream app {
    server ${upstream};
    keepalive 256;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
  return run(procs, dir, 'proxy', conf, cpus);
}
