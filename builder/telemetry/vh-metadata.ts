/**
 * Valohai's metadata lines: a replica that prints `{"vh_metadata": {"loss": 0.2, "label": "cat"}}`
 * on stdout reports one value per key. Numbers feed time series and histograms, strings feed
 * category counts; any other value (booleans, null, objects, arrays) is ignored. A line that is
 * not such a JSON object is an ordinary log line.
 */

/** A metric value: a finite number or a string. */
export type MetricValue = number | string;

/** Longest key name kept (longer keys are ignored). */
export const MAX_KEY_LENGTH = 200;
/** Longest string value kept (longer ones are cut to this many characters). */
export const MAX_STRING_LENGTH = 256;

/**
 * The usable `[key, value]` pairs of a metadata line, in the line's order, or `null` when the
 * line is not a JSON object with a `vh_metadata` object (cheap for ordinary lines: no parse
 * unless the line looks like one). Strings are cut to `MAX_STRING_LENGTH`; keys and strings are
 * well-formed (a lone surrogate, which JSON's `\ud800` escapes allow, reads as U+FFFD), so both
 * metric stores keep the same text.
 */
export function parseMetadata(line: string): [string, MetricValue][] | null {
  if (!line.includes('"vh_metadata"')) return null;
  const text = line.trim();
  if (text.charCodeAt(0) !== 123 /* { */ || text.charCodeAt(text.length - 1) !== 125 /* } */) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isPlainObject(parsed)) return null;
  const meta = parsed.vh_metadata;
  if (!isPlainObject(meta)) return null;
  const out: [string, MetricValue][] = [];
  for (const [raw, value] of Object.entries(meta)) {
    if (raw.length === 0 || raw.length > MAX_KEY_LENGTH) continue;
    const key = raw.toWellFormed();
    if (typeof value === 'number') {
      if (Number.isFinite(value)) out.push([key, value]);
    } else if (typeof value === 'string') {
      out.push([key, cut(value).toWellFormed()]);
    }
  }
  return out;
}

/** `value` cut to `MAX_STRING_LENGTH`, without leaving half of a surrogate pair at the end. */
function cut(value: string): string {
  if (value.length <= MAX_STRING_LENGTH) return value;
  const last = value.charCodeAt(MAX_STRING_LENGTH - 1);
  return value.slice(0, last >= 0xd800 && last <= 0xdbff ? MAX_STRING_LENGTH - 1 : MAX_STRING_LENGTH);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
