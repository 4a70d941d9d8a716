-- The wrk script of `npm run bench` (bench/load.ts passes the arguments after `--`, key=value):
--   rate=<req/s>   fixed arrival rate: every connection of the (single) thread takes the next
--                  slot of one shared schedule (slot i at start + i/rate), and waits until it
--                  (wrk's `delay()`, millisecond timer); a late slot is sent at once (catch-up).
--   routes=<owner>/<project>/<deployments>/<endpoints>/<distinct>
--                  cycle through `distinct` endpoint URLs
--                  /<owner>/<project>/dNNN/production/eNNNN (request i: deployment i % deployments,
--                  endpoint (i // deployments) % endpoints), instead of the command line's URL.
-- `done` prints one line `BENCH_JSON {...}`: counts, errors, latency percentiles in microseconds.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

function init(args)
  local opts = {}
  for _, a in ipairs(args) do
    local k, v = a:match("^([^=]+)=(.*)$")
    if k then opts[k] = v end
  end
  if opts.rate then
    local interval = 1000 / tonumber(opts.rate)
    local next_at = nil
    delay = function()
      local t = now_ms()
      if next_at == nil then next_at = t end
      local slot = next_at
      next_at = next_at + interval
      local d = slot - t
      if d < 1 then return 0 end
      return math.floor(d)
    end
  end
  if opts.routes then
    local owner, project, deployments, endpoints, distinct = opts.routes:match("^([^/]+)/([^/]+)/(%d+)/(%d+)/(%d+)$")
    deployments, endpoints, distinct = tonumber(deployments), tonumber(endpoints), tonumber(distinct)
    local i = 0
    request = function()
      local d = i % deployments
      local e = math.floor(i / deployments) % endpoints
      i = (i + 1) % distinct
      return wrk.format(nil, string.format("/%s/%s/d%03d/production/e%04d", owner, project, d, e))
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
