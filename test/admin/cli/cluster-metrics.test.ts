import t from 'tap';
import cluster, { type Worker } from 'node:cluster';
import { Gauge, Registry } from 'prom-client';
import { ClusterMetrics } from '../../../admin/cli/cluster-metrics.ts';
import { metricValue } from '../../gateway/fixtures.ts';

/** A worker's answer to the primary's metrics request (prom-client's protocol), with one counter. */
function answer(requestId: number, requests: number) {
  return {
    type: 'prom-client:getMetricsRes',
    requestId,
    metrics: [[{ name: 'portico_gateway_requests_total', help: 'Requests.', type: 'counter', aggregator: 'sum', values: [{ value: requests, labels: {} }] }]],
  };
}

t.test('an answer that arrives after its worker exited is not counted again on top of what the worker left', async (t) => {
  const metrics = new ClusterMetrics({ timeoutMs: 50 });
  const worker = { id: 1 } as unknown as Worker;
  cluster.emit('message', worker, answer(0, 5));
  t.equal(metricValue(await metrics.text(), 'portico_gateway_requests_total'), 5);
  cluster.emit('exit', worker, 0, null);
  t.equal(metricValue(await metrics.text(), 'portico_gateway_requests_total'), 5, 'kept after the exit');
  // The IPC channel is read apart from the exit: a reply already sent may come after it.
  cluster.emit('message', worker, answer(1, 6));
  t.equal(metricValue(await metrics.text(), 'portico_gateway_requests_total'), 5, 'the late answer adds nothing');
});

t.test("the primary's own process metrics (its memory, its CPU) are in the sum with the workers'", async (t) => {
  const own = new Registry();
  new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers: [own] }).set(100);
  const metrics = new ClusterMetrics({ timeoutMs: 50, own });
  const worker = { id: 2 } as unknown as Worker;
  const rss = (value: number) => [[{ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', type: 'gauge', aggregator: 'sum', values: [{ value, labels: {} }] }]];
  cluster.emit('message', worker, { type: 'prom-client:getMetricsRes', requestId: 0, metrics: rss(250) });
  t.equal(metricValue(await metrics.text(), 'process_resident_memory_bytes'), 350);
  cluster.emit('exit', worker, 0, null);
  t.equal(metricValue(await metrics.text(), 'process_resident_memory_bytes'), 100, "a gauge: the live processes' only");
});
