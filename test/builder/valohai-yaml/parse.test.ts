import t from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseValohaiYaml, readValohaiYaml, formatProblem, MAX_VALOHAI_YAML_BYTES } from '../../../builder/valohai-yaml/index.ts';

const fmt = (r: { problems: readonly Parameters<typeof formatProblem>[0][] }): string[] => r.problems.map((p) => formatProblem(p));
const warn = (r: { warnings: readonly Parameters<typeof formatProblem>[0][] }): string[] => r.warnings.map((p) => formatProblem(p, 'warning'));
const valid = '- endpoint:\n    name: ex\n    image: i\n    wsgi: w\n';

/** The whole file: its shape, YAML syntax, items. Exactly the problems and warnings each gives. */
const cases: { name: string; yaml: string; problems: string[]; warnings?: string[]; endpoints?: string[] }[] = [
  { name: 'empty file', yaml: '', problems: ['valohai.yaml:1:1: file is empty; a valohai.yaml is a list of items such as "- endpoint:"'] },
  { name: 'only comments and blank lines', yaml: '# nothing yet\n\n', problems: ['valohai.yaml:1:1: file is empty; a valohai.yaml is a list of items such as "- endpoint:"'] },
  { name: 'a mapping, not a list', yaml: 'endpoint:\n  name: ex\n', problems: ['valohai.yaml:1:1: file must be a list of items such as "- endpoint:" (got a mapping)'] },
  { name: 'a scalar, not a list', yaml: 'hello\n', problems: ['valohai.yaml:1:1: file must be a list of items such as "- endpoint:" (got a string ("hello"))'] },
  { name: 'an explicit null', yaml: '~\n', problems: ['valohai.yaml:1:1: file must be a list of items such as "- endpoint:" (got an empty value)'] },
  {
    name: 'items that are not mappings, at their own positions',
    yaml: '- hello\n-\n- [a]\n',
    problems: [
      'valohai.yaml:1:3: item 1: must be a mapping such as "endpoint:" or "step:" (got a string ("hello"))',
      'valohai.yaml:2:2: item 2: must be a mapping such as "endpoint:" or "step:" (got an empty value)',
      'valohai.yaml:3:3: item 3: must be a mapping such as "endpoint:" or "step:" (got a list)',
    ],
  },
  {
    name: 'other kinds are accepted whatever their contents',
    yaml: '- step: 42\n- pipeline: [x]\n- task: {anything: [1, 2]}\n- deployment:\n- blueprint: {}\n- step: {name: s}\n  extra: 1\n' + valid,
    problems: [],
    endpoints: ['ex'],
  },
  {
    name: 'unknown kinds are ignored with a warning (as valohai-yaml lints "No parser for ...")',
    yaml: '- endpiont: {}\n- foo: 1\n- {}\n' + valid,
    problems: [],
    warnings: [
      'valohai.yaml:1:3: warning: item 1: unknown kind "endpiont" is ignored (did you mean endpoint?)',
      'valohai.yaml:2:3: warning: item 2: unknown kind "foo" is ignored (known: endpoint, step, pipeline, blueprint, task, deployment)',
      'valohai.yaml:3:3: warning: item 3: empty item is ignored',
    ],
    endpoints: ['ex'],
  },
  { name: 'no endpoint at all is a warning', yaml: '- step: {name: s}\n', problems: [], warnings: ['valohai.yaml: warning: no "- endpoint:" item; there is nothing to serve'] },
  {
    name: 'duplicate keys anywhere, also in kinds that are otherwise not checked',
    yaml: '- step:\n    name: a\n    inputs:\n      - name: x\n        name: y\n- step: {name: b}\n  step: {name: c}\n',
    problems: [
      'valohai.yaml:5:9: item 1 step.inputs[0].name: duplicate key; first written at valohai.yaml:4:9',
      'valohai.yaml:7:3: item 2 step: duplicate key; first written at valohai.yaml:6:3',
    ],
  },
  {
    name: 'an item with two endpoint keys',
    yaml: '- endpoint: {name: ex, image: i, wsgi: w}\n  endpoint: {name: ey, image: i, wsgi: w}\n',
    problems: ['valohai.yaml:2:3: item 1 endpoint: duplicate key; first written at valohai.yaml:1:3'],
  },
  // YAML syntax: reported with positions, and nothing else is checked.
  {
    name: 'YAML: unclosed flow collection',
    yaml: '- endpoint: {name: ex, image: [i\n- step: {}\n',
    problems: [
      'valohai.yaml:2:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      'valohai.yaml:2:1: invalid YAML: Flow map in block collection must be sufficiently indented and end with a }',
    ],
  },
  { name: 'YAML: inconsistent indentation', yaml: '- endpoint:\n    name: ex\n   image: i\n', problems: ['valohai.yaml:3:1: invalid YAML: All mapping items must start at the same column'] },
  { name: 'YAML: unterminated quote', yaml: '- endpoint:\n    name: "ex\n', problems: ['valohai.yaml:3:1: invalid YAML: Missing closing "quote'] },
  { name: 'YAML: a second document', yaml: '- step: {}\n---\n- step: {}\n', problems: ['valohai.yaml:2:1: invalid YAML: a valohai.yaml holds one YAML document; remove the "---" that starts a second one'] },
  { name: 'YAML: value with an unquoted colon', yaml: '- endpoint:\n    name: ex\n    image: a: b\n', problems: ['valohai.yaml:3:12: invalid YAML: Nested mappings are not allowed in compact mappings'] },
  { name: 'YAML: alias without an anchor', yaml: '- endpoint:\n    name: *nope\n', problems: ['valohai.yaml:2:11: invalid YAML: alias *nope has no anchor &nope before it'] },
  {
    name: 'YAML: alias inside the node it names',
    yaml: '- endpoint: &a\n    name: ex\n    image: i\n    wsgi: w\n    <<: *a\n',
    problems: ['valohai.yaml:5:9: invalid YAML: alias *a is inside the node it names (a cycle)'],
  },
  { name: 'YAML: an unknown tag (PyYAML refuses it)', yaml: '- endpoint:\n    name: !foo ex\n    image: i\n    wsgi: w\n', problems: ['valohai.yaml:2:11: invalid YAML: Unresolved tag: !foo'] },
  { name: 'YAML: a byte order mark is not a character of line 1', yaml: '\uFEFF- endpoint:\n    name: Ex\n    image: i\n    wsgi: w\n', problems: ['valohai.yaml:2:11: endpoint "Ex" name: must match ^[a-z][a-z0-9-]+$'] },
  { name: 'YAML: CRLF line ends', yaml: '- endpoint:\r\n    name: Ex\r\n    image: i\r\n    wsgi: w\r\n', problems: ['valohai.yaml:2:11: endpoint "Ex" name: must match ^[a-z][a-z0-9-]+$'] },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const r = parseValohaiYaml(c.yaml);
    t.strictSame(fmt(r), c.problems, 'problems');
    t.strictSame(warn(r), c.warnings ?? [], 'warnings');
    t.strictSame(r.endpoints.map((e) => e.name), c.endpoints ?? [], 'endpoints');
  });
}

t.test('the file name given is the one in problems', async (t) => {
  const r = parseValohaiYaml('- endpoint: {name: X, image: i, wsgi: w}\n', 'repo/valohai.yaml');
  t.strictSame(fmt(r), ['repo/valohai.yaml:1:20: endpoint "X" name: must match ^[a-z][a-z0-9-]+$']);
  t.strictSame(r.problems[0], { file: 'repo/valohai.yaml', line: 1, column: 20, path: 'endpoint "X" name', message: 'must match ^[a-z][a-z0-9-]+$' });
});

t.test('text and bytes give the same result', async (t) => {
  const text = '- endpoint:\n    name: "ünïcode"\n    image: i\n    port: 1\n    wsgi: w\n';
  t.strictSame(parseValohaiYaml(Buffer.from(text)), parseValohaiYaml(text));
  t.strictSame(fmt(parseValohaiYaml(text)), [
    'valohai.yaml:2:11: endpoint "ünïcode" name: must match ^[a-z][a-z0-9-]+$',
    'valohai.yaml:4:11: endpoint "ünïcode" port: must be between 1025 and 65535 (got 1)',
  ]);
});

t.test('size limit: refused before parsing, as text or as bytes', async (t) => {
  // Valid YAML just over the limit: only the size is reported.
  const big = valid + `# ${'x'.repeat(MAX_VALOHAI_YAML_BYTES)}\n`;
  const size = Buffer.byteLength(big);
  const message = `valohai.yaml: is ${size} bytes; a valohai.yaml may have at most 1048576 bytes (1 MiB)`;
  t.strictSame(fmt(parseValohaiYaml(big)), [message]);
  t.strictSame(fmt(parseValohaiYaml(Buffer.from(big))), [message]);
  // Multi-byte characters count as bytes: 400k 'é' is 800k UTF-16 units... and 800k bytes, under;
  // 600k 'é' is 1.2 MB of UTF-8 although only 600k characters.
  t.strictSame(parseValohaiYaml(valid + `# ${'é'.repeat(400_000)}\n`).problems, []);
  t.match(fmt(parseValohaiYaml(valid + `# ${'é'.repeat(600_000)}\n`))[0], /^valohai\.yaml: is 12000\d\d bytes; /);
  // Exactly at the limit is accepted.
  const exact = valid + '#'.repeat(MAX_VALOHAI_YAML_BYTES - Buffer.byteLength(valid) - 1) + '\n';
  t.equal(Buffer.byteLength(exact), MAX_VALOHAI_YAML_BYTES);
  t.strictSame(parseValohaiYaml(exact).problems, []);
});

t.test('non-UTF-8 bytes are reported where they are', async (t) => {
  const bytes = Buffer.concat([Buffer.from('- endpoint:\n    name: ex\n    image: "caf'), Buffer.from([0xe9]), Buffer.from('"\n    wsgi: w\n')]);
  t.strictSame(fmt(parseValohaiYaml(bytes)), ['valohai.yaml:3:16: is not valid UTF-8 (byte 0xe9); save the file as UTF-8']);
});

t.test('aliases that expand beyond the visit budget are refused, quickly', async (t) => {
  // 5000 tolerations behind one alias, used by 300 endpoints: 6 million values once expanded.
  const tolerations = `x: &t [${Array.from({ length: 5000 }, () => '*k').join(', ')}]`;
  const endpoints = Array.from({ length: 300 }, (_, i) => `- endpoint: {name: ep${i}, image: i, wsgi: w, tolerations: *t}`).join('\n');
  const yaml = `- step:\n    k: &k {key: a}\n    ${tolerations}\n${endpoints}\n`;
  t.ok(Buffer.byteLength(yaml) < MAX_VALOHAI_YAML_BYTES);
  const started = performance.now();
  const r = parseValohaiYaml(yaml);
  t.ok(performance.now() - started < 10_000, 'stops early');
  t.strictSame(fmt(r), ['valohai.yaml: aliases expand the file to more than 1000000 values']);
  t.strictSame(r.endpoints, []);
});

t.test('problems beyond 1000 are counted, not kept', async (t) => {
  const yaml = `- endpoint: {name: ex, image: i, server-command: [${Array.from({ length: 1500 }, () => '1').join(', ')}]}\n`;
  const r = parseValohaiYaml(yaml);
  t.equal(r.problems.length, 1001);
  t.equal(formatProblem(r.problems[0] as (typeof r.problems)[0]), 'valohai.yaml: 500 more problems not shown');
  t.equal(formatProblem(r.problems[1] as (typeof r.problems)[0]), 'valohai.yaml:1:51: endpoint "ex" server-command[0]: must be a string (got a number (1))');
});

t.test('readValohaiYaml', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-valohai-yaml-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: string | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };

  t.test('reads a valid file; problems name the path as given, or the name passed', async (t) => {
    const p = file('ok.yaml', valid);
    const r = await readValohaiYaml(p);
    t.strictSame(r.problems, []);
    t.strictSame(r.endpoints.map((e) => [e.name, e.location.file]), [['ex', p]]);
    const named = await readValohaiYaml(file('bad.yaml', '- endpoint: {}\n'), 'valohai.yaml');
    t.strictSame(fmt(named), ['valohai.yaml:1:3: endpoint #1 name: is required', 'valohai.yaml:1:3: endpoint #1 image: is required', 'valohai.yaml:1:3: endpoint #1: needs server-command or wsgi (exactly one of them)']);
  });

  t.test('a missing file', async (t) => {
    const p = join(dir, 'missing.yaml');
    t.strictSame(fmt(await readValohaiYaml(p)), [`${p}: cannot read: no such file`]);
  });

  t.test('a directory', async (t) => {
    const p = join(dir, 'sub');
    mkdirSync(p);
    t.strictSame(fmt(await readValohaiYaml(p)), [`${p}: cannot read: is a directory, not a file`]);
  });

  t.test('a file over the limit is refused by its size', async (t) => {
    const p = file('big.yaml', Buffer.alloc(MAX_VALOHAI_YAML_BYTES + 1, 0x23));
    t.strictSame(fmt(await readValohaiYaml(p)), [`${p}: is 1048577 bytes; a valohai.yaml may have at most 1048576 bytes (1 MiB)`]);
  });

  t.test('a device that never ends is cut at the limit', async (t) => {
    t.strictSame(fmt(await readValohaiYaml('/dev/zero', 'zero')), ['zero: is more than 1048576 bytes; a valohai.yaml may have at most 1048576 bytes (1 MiB)']);
  });

  t.test('non-UTF-8 and UTF-16 files', async (t) => {
    t.strictSame(fmt(await readValohaiYaml(file('latin1.yaml', Buffer.from('- step: {name: caf\xe9}\n', 'latin1')), 'v.yaml')), ['v.yaml:1:19: is not valid UTF-8 (byte 0xe9); save the file as UTF-8']);
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(valid, 'utf16le')]);
    t.strictSame(fmt(await readValohaiYaml(file('utf16.yaml', utf16), 'v.yaml')), ['v.yaml:1:1: is UTF-16 or UTF-32 encoded (byte order mark); save it as UTF-8']);
  });

  t.test('a UTF-8 byte order mark is dropped', async (t) => {
    const r = await readValohaiYaml(file('bom.yaml', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(valid)])));
    t.strictSame(r.problems, []);
    t.strictSame(r.endpoints.map((e) => e.location), [{ file: join(dir, 'bom.yaml'), line: 1, column: 3 }]);
  });
});
