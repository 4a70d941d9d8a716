import { ValidationError } from '../http.ts';
import { defineRoute, DEPLOYMENT, deploymentParams, name, NAME_PATTERN, VERSION, versionParams } from '../route.ts';
import { enumOf, int, object, optional, string, type JsonSchema, type Schema } from '../schema.ts';
import { ENDPOINT_NAME_PATTERN } from './versions.ts';

/** Most versions one comparison may name. */
const MAX_COMPARED = 10;

/** A finite number (a query-string value is converted), for histogram bounds. */
function decimal(description: string, example: number): Schema<number> {
  return {
    kind: 'string',
    optional: false,
    check(value, path, problems, { coerce }) {
      let v = value;
      if (coerce && typeof v === 'string' && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) v = Number(v);
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        problems.push({ path, message: 'must be a number' });
        return undefined;
      }
      return v;
    },
    jsonSchema: () => ({ type: 'number', description, examples: [example] }),
  };
}

const metricQuery = {
  key: optional(string({ min: 1, max: 200, description: 'The vh_metadata key. Without it the answer lists the keys.', example: 'score' })),
  mode: optional(enumOf(['series', 'histogram'], { description: 'series (default): points over time; histogram: bins of a number key, or the categories of a string key.' })),
  from: optional(int({ min: 0, description: 'Only points at or after this time (epoch milliseconds).' })),
  to: optional(int({ min: 0, description: 'Only points before this time (epoch milliseconds).' })),
  step: optional(int({ min: 1, max: 365 * 86_400_000, description: 'series: downsample into buckets of this many milliseconds (mean, min, max per bucket).' })),
  points: optional(int({ min: 1, max: 10_000, description: 'series: downsample into this many buckets over the range.' })),
  bins: optional(int({ min: 1, max: 1000, description: 'histogram: number of equal-width bins (default: automatic, Freedman–Diaconis, or Sturges when the values barely spread).' })),
  lo: optional(decimal('histogram: lower bound of the bins (default: the smallest value); smaller values are left out.', 0)),
  hi: optional(decimal('histogram: upper bound of the bins (default: the largest value); larger values are left out.', 10)),
  replica: optional(string({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$', description: 'Only points this replica printed.', example: 'predict-0' })),
};

const num: JsonSchema = { type: 'number' };
const keyInfo: JsonSchema = {
  type: 'object',
  properties: { name: { type: 'string' }, kind: { type: 'string', enum: ['number', 'string'] }, count: { type: 'integer', description: 'Points kept.' } },
  required: ['name', 'kind', 'count'],
};
const bin: JsonSchema = { type: 'object', properties: { lo: num, hi: num, count: { type: 'integer' } }, required: ['lo', 'hi', 'count'] };
const category: JsonSchema = { type: 'object', properties: { value: { type: 'string' }, count: { type: 'integer' } }, required: ['value', 'count'] };
const bucket: JsonSchema = {
  type: 'object',
  properties: { t: { type: 'integer' }, count: { type: 'integer' }, mean: num, min: num, max: num },
  required: ['t', 'count', 'mean', 'min', 'max'],
};
const result: JsonSchema = {
  type: 'object',
  description: 'Without key: `keys`. mode=series: `points` ([epochMillis, value], oldest first; downsampled: bucket start and mean, with `buckets`, `from`, `to`, `step`). mode=histogram: `bins` (number key) or `categories` (string key, most frequent first).',
  properties: {
    keys: { type: 'array', items: keyInfo },
    key: { type: 'string' },
    kind: { type: ['string', 'null'], enum: ['number', 'string', null] },
    points: { type: 'array', items: { type: 'array', prefixItems: [{ type: 'integer' }, { type: ['number', 'string'] }] } },
    from: { type: 'integer' },
    to: { type: 'integer' },
    step: { type: 'integer' },
    buckets: { type: 'array', items: bucket },
    count: { type: 'integer', description: 'Values counted.' },
    bins: { type: 'array', items: bin },
    categories: { type: 'array', items: category },
  },
};

const endpointQuery = object(metricQuery, { unknownLabel: 'query parameter' });
const compareQuery = object({
  endpoint: string({ pattern: ENDPOINT_NAME_PATTERN, description: 'The endpoint whose metrics are compared.', example: 'predict' }),
  versions: string({ min: 1, max: 1100, description: `Comma-separated version names (1 to ${MAX_COMPARED}), in the order the answer lists them.`, example: '20181002.0,20181002.1' }),
  ...metricQuery,
}, { unknownLabel: 'query parameter' });

const versionPattern = new RegExp(NAME_PATTERN);

/** `a,b` -> `['a', 'b']`, each a version name, at most MAX_COMPARED, no repeats. */
function versionList(text: string): string[] {
  const names = text.split(',').map((s) => s.trim());
  const problems = [];
  if (names.length > MAX_COMPARED) problems.push({ path: 'query.versions', message: `must name at most ${MAX_COMPARED} versions` });
  for (const n of names) if (!versionPattern.test(n)) problems.push({ path: 'query.versions', message: `${JSON.stringify(n)} is not a version name (${NAME_PATTERN})` });
  if (new Set(names).size !== names.length) problems.push({ path: 'query.versions', message: 'must name each version once' });
  if (problems.length > 0) throw new ValidationError(problems);
  return names;
}

/** vh_metadata metrics of an endpoint of a version, and compared across versions. */
export const metricRoutes = [
  defineRoute({
    id: 'getEndpointMetrics',
    method: 'GET',
    path: `${VERSION}/endpoints/{endpoint}/metrics`,
    tag: 'metrics',
    summary: 'Read the vh_metadata metrics of an endpoint: keys, a series or a histogram',
    description: 'Replicas report metrics by printing `{"vh_metadata": {"key": value}}` lines on stdout: numbers make time series and histograms, strings category counts. Without `key`: `{"keys": [{"name", "kind", "count"}]}`. With `key`, `mode=series` (default): `{"key", "kind", "points": [[epochMillis, value], ...]}`, raw, or downsampled with `step` or `points` (then `buckets` give count, mean, min and max). `mode=histogram`: `{"key", "kind", "count", "bins": [{"lo", "hi", "count"}]}` for numbers, `{"key", "kind", "count", "categories": [{"value", "count"}]}` for strings. Each series keeps its newest 10,000 points.',
    params: { ...versionParams, endpoint: name('Endpoint name.', 'predict') },
    query: endpointQuery,
    response: { status: 200, description: 'The keys, series or histogram.', schema: result },
    errors: ['NOT_FOUND'],
    handler: async ({ control, params, query }) => {
      const { endpoint, ...ref } = params;
      return { body: await control.endpointMetrics(ref, endpoint, query) };
    },
  }),
  defineRoute({
    id: 'compareMetrics',
    method: 'GET',
    path: `${DEPLOYMENT}/metrics`,
    tag: 'metrics',
    summary: 'Compare a metric of an endpoint across versions of a deployment',
    description: 'The query of the endpoint metrics route, for several versions at once: `{"endpoint", "key", "mode", "versions": [{"version", ...the result for that version}]}` in the order asked (without `key`: `{"endpoint", "versions": [{"version", "keys"}]}`). Histograms share one range and one set of bins computed from every version\'s values; downsampled series share `from`, `to` and `step`, so the charts overlay. A version without the key answers an empty result (`kind: null`, or zero-count bins).',
    params: deploymentParams,
    query: compareQuery,
    response: {
      status: 200,
      description: 'One result per version.',
      schema: {
        type: 'object',
        properties: {
          endpoint: { type: 'string' },
          key: { type: 'string' },
          mode: { type: 'string', enum: ['series', 'histogram'] },
          versions: { type: 'array', items: { allOf: [{ type: 'object', properties: { version: { type: 'string' } }, required: ['version'] }, result] } },
        },
        required: ['endpoint', 'versions'],
      },
    },
    errors: ['NOT_FOUND'],
    handler: async ({ control, params, query }) => {
      const { versions, ...rest } = query;
      return { body: await control.compareMetrics(params, { ...rest, versions: versionList(versions) }) };
    },
  }),
];
