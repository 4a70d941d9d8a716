// The UI's pure helpers, run in Node: what the environment editor sends (a stored secret left
// untouched goes back as "********", which the API reads as "keep") and the console's header parsing.
import t from 'tap';

type Row = { name: string; value: string; secret: boolean; stored: boolean };
interface EnvironmentModule {
  MASK: string;
  environmentBody(rows: Row[]): { variables: Record<string, { value: string; secret: boolean }> } | { problems: string[] };
}
interface ConsoleModule {
  parseHeaders(text: string): Record<string, string>;
  truncationNote(answer: { truncated?: boolean }, size: number): string | null;
}

// Browser modules (plain JS, no declarations): loaded by URL so the typechecker leaves them be.
const load = <T>(path: string): Promise<T> => import(new URL(`../../../admin/ui/static/js/pages/${path}`, import.meta.url).href) as Promise<T>;

t.test('environment: stored secrets are kept masked, new values sent, problems listed', async (t) => {
  const { MASK, environmentBody } = await load<EnvironmentModule>('environment.js');
  t.equal(MASK, '********');
  t.same(environmentBody([
    { name: 'API_KEY', value: '', secret: true, stored: true },
    { name: 'TOKEN', value: 'new-secret', secret: true, stored: true },
    { name: 'MODEL', value: 'large', secret: false, stored: false },
    { name: 'PASSWORD', value: 'p', secret: true, stored: false },
  ]), {
    variables: {
      API_KEY: { value: MASK, secret: true },
      TOKEN: { value: 'new-secret', secret: true },
      MODEL: { value: 'large', secret: false },
      PASSWORD: { value: 'p', secret: true },
    },
  });
  const bad = environmentBody([
    { name: '1BAD', value: 'x', secret: false, stored: false },
    { name: 'A', value: 'x', secret: false, stored: false },
    { name: 'A', value: 'y', secret: false, stored: false },
    { name: 'NEW', value: MASK, secret: true, stored: false },
    { name: '__proto__', value: 'x', secret: false, stored: false },
  ]);
  t.ok('problems' in bad);
  if ('problems' in bad) {
    t.equal(bad.problems.length, 4);
    t.match(bad.problems.join('\n'), /"1BAD" is not a variable name/);
    t.match(bad.problems.join('\n'), /"__proto__" is not a variable name .*not __proto__/, 'refused, not silently dropped');
    t.match(bad.problems.join('\n'), /A is listed twice/);
    t.match(bad.problems.join('\n'), /NEW: "\*{8}" cannot be a new secret value/);
  }
  const names = ['constructor', 'toString', 'hasOwnProperty'];
  t.same(environmentBody(names.map((name) => ({ name, value: name, secret: false, stored: false }))), {
    variables: Object.fromEntries(names.map((n) => [n, { value: n, secret: false }])),
  }, 'names Object.prototype has are variables like any other');
});

t.test('console headers: "Name: value" lines', async (t) => {
  const { parseHeaders } = await load<ConsoleModule>('console.js');
  t.same(parseHeaders('X-One: 1\n\n  Accept:  application/json \nx-empty:'), { 'x-one': '1', accept: 'application/json', 'x-empty': '' });
  t.same(parseHeaders('X-Url: http://a/b:c'), { 'x-url': 'http://a/b:c' }, 'split at the first colon');
  t.throws(() => parseHeaders('ok: 1\nno colon here'), /line 2/);
  t.throws(() => parseHeaders('bad name: 1'), /line 1/);
});

t.test('console reply: a body the API cut is said to be cut', async (t) => {
  const { truncationNote } = await load<ConsoleModule>('console.js');
  t.equal(truncationNote({ truncated: true }, 16777216), 'The body was longer: only its first 16777216 bytes came back, so it may not decode or parse.');
  t.equal(truncationNote({}, 10), null, 'a whole body: nothing to say');
});
