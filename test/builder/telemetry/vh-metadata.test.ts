import t from 'tap';
import { MAX_KEY_LENGTH, MAX_STRING_LENGTH, parseMetadata } from '../../../builder/telemetry/vh-metadata.ts';

t.test('parseMetadata: numbers and strings of a vh_metadata object; anything else is a log line', async (t) => {
  const cases: [string, string, unknown][] = [
    ['the sentiment example', '{"vh_metadata":{"score":3,"label":"positive"}}', [['score', 3], ['label', 'positive']]],
    ['spaces around, other top-level fields', '  {"time": 1, "vh_metadata": {"loss": 0.25}}  ', [['loss', 0.25]]],
    ['negative, exponent and zero', '{"vh_metadata":{"a":-1.5,"b":2e-3,"c":0}}', [['a', -1.5], ['b', 0.002], ['c', 0]]],
    ['other value types are ignored', '{"vh_metadata":{"ok":true,"n":null,"o":{"x":1},"arr":[1],"s":"x","v":1}}', [['s', 'x'], ['v', 1]]],
    ['an empty object reports nothing', '{"vh_metadata":{}}', []],
    ['an empty key is ignored', '{"vh_metadata":{"":1,"k":2}}', [['k', 2]]],
    ['a key named __proto__ is plain data', '{"vh_metadata":{"__proto__":5}}', [['__proto__', 5]]],
    ['not JSON', '{"vh_metadata": {score: 3}}', null],
    ['torn JSON', '{"vh_metadata":{"score":3}', null],
    ['vh_metadata not an object', '{"vh_metadata":[1,2]}', null],
    ['vh_metadata null', '{"vh_metadata":null}', null],
    ['vh_metadata a number', '{"vh_metadata":3}', null],
    ['a JSON array', '[{"vh_metadata":{"a":1}}]', null],
    ['text mentioning it', 'I print "vh_metadata" sometimes', null],
    ['an ordinary line', 'sentiment model listening on 127.0.0.1:8000', null],
    ['nested, not top level', '{"x":{"vh_metadata":{"a":1}}}', null],
  ];
  for (const [name, line, want] of cases) t.same(parseMetadata(line), want, name);
});

t.test('parseMetadata: long keys are ignored, long strings cut', async (t) => {
  const long = 'k'.repeat(MAX_KEY_LENGTH + 1);
  const text = 'x'.repeat(MAX_STRING_LENGTH + 50);
  const got = parseMetadata(JSON.stringify({ vh_metadata: { [long]: 1, ['k'.repeat(MAX_KEY_LENGTH)]: 2, s: text } }));
  t.same(got, [['k'.repeat(MAX_KEY_LENGTH), 2], ['s', 'x'.repeat(MAX_STRING_LENGTH)]]);
});

t.test('parseMetadata: keys and strings come out well-formed (lone surrogates replaced, a pair never cut in half)', async (t) => {
  t.same(parseMetadata('{"vh_metadata":{"\\ud800":1,"label":"a\\udc00b","ok":"\\ud83d\\ude00"}}'), [['\ufffd', 1], ['label', 'a\ufffdb'], ['ok', '\u{1f600}']]);
  const cut = parseMetadata(JSON.stringify({ vh_metadata: { s: `${'x'.repeat(MAX_STRING_LENGTH - 1)}\u{1f600}` } }));
  t.same(cut, [['s', 'x'.repeat(MAX_STRING_LENGTH - 1)]], 'an emoji across the cut is left out whole');
  for (const [k, v] of cut ?? []) t.ok(k.isWellFormed() && (typeof v !== 'string' || v.isWellFormed()));
});
