import t from 'tap';
import { AggregatorRegistry } from 'prom-client';
import { GatewayMetrics, LATENCY_BUCKETS } from '../../gateway/metrics.ts';
import { metricValue } from './fixtures.ts';

function metrics() {
  const cache = { stats: { hits: 0, misses: 0, negativeHits: 0, invalidations: 0, size: 0 } };
  const auth = { stats: { hashes: 0, cacheHits: 0, failureCacheHits: 0 } };
  let inFlight = 0;
  const m = new GatewayMetrics({ cache, auth, inFlight: () => inFlight, accessLogDropped: () => 3, processMetrics: false });
  return { m, cache, auth, setInFlight: (n: number) => void (inFlight = n) };
}

const route = { owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict' };

t.test('route series: requests by status class and a latency histogram', async (t) => {
  const { m } = metrics();
  const r = m.route('e:acme/mnist/web/v1/predict', { ...route, replicas: [] } as typeof route);
  t.equal(m.route('e:acme/mnist/web/v1/predict', route), r, 'one pre-bound object per route');
  r.observe(200, 0.004);
  r.observe(204, 0.2);
  r.observe(503, 3);
  r.observe(404, 500);
  m.unrouted.observe(400, 0.0001);
  const text = await m.text();
  t.equal(metricValue(text, 'portico_gateway_requests_total', { ...route, status_class: '2xx' }), 2);
  t.equal(metricValue(text, 'portico_gateway_requests_total', { ...route, status_class: '5xx' }), 1);
  t.equal(metricValue(text, 'portico_gateway_requests_total', { ...route, status_class: '4xx' }), 1);
  t.equal(metricValue(text, 'portico_gateway_requests_total', { owner: '', status_class: '4xx' }), 1);
  t.notMatch(text, /replicas=/, 'only route labels');
  const bucket = (le: string) => metricValue(text, 'portico_gateway_request_duration_seconds_bucket', { ...route, le });
  t.equal(bucket('0.001'), 0);
  t.equal(bucket('0.005'), 1);
  t.equal(bucket('0.25'), 2);
  t.equal(bucket('5'), 3);
  t.equal(bucket(String(LATENCY_BUCKETS.at(-1))), 3);
  t.equal(bucket('+Inf'), 4);
  t.equal(metricValue(text, 'portico_gateway_request_duration_seconds_count', route), 4);
  t.equal(metricValue(text, 'portico_gateway_request_duration_seconds_sum', route), 0.004 + 0.2 + 3 + 500);
});

t.test('scrape-time values: cache, auth, in flight, upstream errors', async (t) => {
  const { m, cache, auth, setInFlight } = metrics();
  Object.assign(cache.stats, { hits: 10, misses: 2, negativeHits: 1, invalidations: 4, size: 7 });
  Object.assign(auth.stats, { hashes: 1, cacheHits: 99, failureCacheHits: 5 });
  setInFlight(3);
  m.upstreamError('ECONNREFUSED');
  m.upstreamError('ECONNREFUSED');
  m.retry();
  m.clientError('BAD_REQUEST');
  const text = await m.text();
  const want: [string, number, Record<string, string>?][] = [
    ['portico_gateway_route_cache_hits_total', 10],
    ['portico_gateway_route_cache_misses_total', 2],
    ['portico_gateway_route_cache_negative_hits_total', 1],
    ['portico_gateway_route_cache_invalidations_total', 4],
    ['portico_gateway_route_cache_entries', 7],
    ['portico_gateway_auth_hashes_total', 1],
    ['portico_gateway_auth_cache_hits_total', 99],
    ['portico_gateway_auth_failure_cache_hits_total', 5],
    ['portico_gateway_requests_in_flight', 3],
    ['portico_gateway_upstream_errors_total', 2, { code: 'ECONNREFUSED' }],
    ['portico_gateway_upstream_retries_total', 1],
    ['portico_gateway_client_errors_total', 1, { code: 'BAD_REQUEST' }],
    ['portico_gateway_access_log_dropped_total', 3],
  ];
  for (const [name, value, labels] of want) t.equal(metricValue(text, name, labels), value, name);
  // Scraping twice does not double the collected counters.
  t.equal(metricValue(await m.text(), 'portico_gateway_route_cache_hits_total'), 10);
});

t.test('series from several workers sum in the cluster aggregator', async (t) => {
  const a = metrics();
  const b = metrics();
  a.m.route('k', route).observe(200, 0.01);
  b.m.route('k', route).observe(200, 0.02);
  b.m.route('k', route).observe(500, 0.02);
  const agg = AggregatorRegistry.aggregate([await a.m.registry.getMetricsAsJSON(), await b.m.registry.getMetricsAsJSON()] as never);
  const text = await agg.metrics();
  t.equal(metricValue(text, 'portico_gateway_requests_total', { ...route, status_class: '2xx' }), 2);
  t.equal(metricValue(text, 'portico_gateway_requests_total', { ...route, status_class: '5xx' }), 1);
  t.equal(metricValue(text, 'portico_gateway_request_duration_seconds_count', route), 3);
  t.equal(metricValue(text, 'portico_gateway_request_duration_seconds_bucket', { ...route, le: '0.01' }), 1);
});
