# Portico's own image: controller + gateway (`portico start`), or either alone
# (`portico gateway`, `portico controller`). Node 24 runs the TypeScript sources directly (type
# stripping), so nothing is compiled: the image holds the sources and production node_modules.
#
#   docker build -t portico .
#   docker build --build-arg BASE_IMAGE=registry.example/node:24-bookworm-slim -t portico .
#   docker run -p 8080:8080 -p 8081:8081 -v portico-data:/data portico
#   docker run -e PORTICO_REDIS_URL=redis://redis:6379 -p 8080:8080 portico gateway
#
# BASE_IMAGE must be a Debian-based Node 24 image (apt-get installs the runtime packages).
ARG BASE_IMAGE=node:24-bookworm-slim

FROM ${BASE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only: the `node` devDependency (a Node 24 binary for machines whose own
# Node is older) is not needed on a Node 24 image. No install scripts: the ones in the tree are
# optional native speed-ups (package.json `allowScripts` turns them off as well).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${BASE_IMAGE}
# tini reaps the replica processes the local runtime starts and forwards signals (SIGTERM drain);
# git fetches git sources; python3 + venv run and install Valohai endpoint apps on the local
# runtime. Pass a shorter list for a gateway-only image, e.g. --build-arg RUNTIME_PACKAGES=tini,
# or an empty one for a base image that has them already (then apt is not needed at all).
ARG RUNTIME_PACKAGES="tini ca-certificates git python3 python3-venv"
RUN if [ -n "${RUNTIME_PACKAGES}" ]; then \
      apt-get update \
   && apt-get install -y --no-install-recommends ${RUNTIME_PACKAGES} \
   && rm -rf /var/lib/apt/lists/*; \
    fi

# As bin/portico.ts's first line runs it: two malloc arenas, large blocks returned at once, and a
# 2 x 16 MiB young generation (docs/benchmarks.md, memory section). Node flags come from
# NODE_OPTIONS only, so a deployment can replace them (deploy/kubernetes does for the gateway).
ENV NODE_ENV=production \
    PORTICO_HOST=0.0.0.0 \
    PORTICO_DATA_DIR=/data \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    NODE_OPTIONS=--max-semi-space-size=16
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY common ./common
COPY gateway ./gateway
COPY builder ./builder
COPY admin ./admin
RUN chmod 0755 bin/portico.ts \
 && ln -s /app/bin/portico.ts /usr/local/bin/portico \
 && mkdir -p /data \
 && chown node:node /data \
 && chmod 0700 /data

# The image's `node` user (uid 1000), never root.
USER node
VOLUME ["/data"]
EXPOSE 8080 8081 9464

# Healthy when the gateway or the admin port answers GET /healthz (`portico gateway` serves only
# the former, `portico controller` only the latter), asked on PORTICO_HOST (loopback when it is
# every address, 0.0.0.0 or ::).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const e=process.env,a=e.PORTICO_HOST||'127.0.0.1',b=a==='0.0.0.0'||a==='::'?'127.0.0.1':a.includes(':')?`[${a}]`:a,h=p=>fetch(`http://${b}:${p}/healthz`).then(r=>{if(!r.ok)throw 0});Promise.any([h(e.PORTICO_GATEWAY_PORT||8080),h(e.PORTICO_ADMIN_PORT||8081)]).then(()=>process.exit(0),()=>process.exit(1))"]

ENTRYPOINT ["tini", "--", "node", "/app/bin/portico.ts"]
CMD ["start"]
