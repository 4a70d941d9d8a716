import t from 'tap';
import { parseValohaiYaml, formatProblem } from '../../../builder/valohai-yaml/index.ts';
import { suggest } from '../../../builder/valohai-yaml/endpoint.ts';

/**
 * One bad (or edge) case per endpoint rule of endpoint.schema.json and of Portico's own checks:
 * the YAML, and exactly the problems it must give (file:line:column: path: message).
 */
interface Case {
  readonly name: string;
  readonly yaml: string;
  readonly problems: readonly string[];
  readonly warnings?: readonly string[];
  /** Endpoint names returned (default: none when there are problems). */
  readonly endpoints?: readonly string[];
}

/** An endpoint item whose lines after `- endpoint:` are `fields` (indented 4 here). */
const ep = (...fields: string[]): string => ['- endpoint:', ...fields.map((f) => `    ${f}`)].join('\n') + '\n';
const base = ['name: ex', 'image: python:3.12', 'wsgi: app:app'];
const baseSc = ['name: ex', 'image: python:3.12', 'server-command: python app.py'];

const cases: Case[] = [
  // name
  { name: 'name: one character is too short for the pattern', yaml: ep('name: a', 'image: i', 'wsgi: w'), problems: ['valohai.yaml:2:11: endpoint "a" name: must match ^[a-z][a-z0-9-]+$'] },
  { name: 'name: uppercase', yaml: ep('name: Predict', 'image: i', 'wsgi: w'), problems: ['valohai.yaml:2:11: endpoint "Predict" name: must match ^[a-z][a-z0-9-]+$'] },
  { name: 'name: trailing newline does not sneak past the pattern', yaml: ep('name: "ab\\n"', 'image: i', 'wsgi: w'), problems: ['valohai.yaml:2:11: endpoint "ab\\n" name: must match ^[a-z][a-z0-9-]+$'] },
  { name: 'name: a number', yaml: ep('name: 123', 'image: i', 'wsgi: w'), problems: ['valohai.yaml:2:11: endpoint #1 name: must be a string (got a number (123))'] },
  { name: 'name: missing', yaml: ep('image: i', 'wsgi: w'), problems: ['valohai.yaml:1:3: endpoint #1 name: is required'] },
  { name: 'name: empty value', yaml: ep('name:', 'image: i', 'wsgi: w'), problems: ['valohai.yaml:2:5: endpoint #1 name: must be a string (got an empty value)'] },
  {
    name: 'name: a long name is shortened in labels',
    yaml: ep(`name: ${'a'.repeat(100)}`, 'wsgi: w'),
    problems: [`valohai.yaml:1:3: endpoint "${'a'.repeat(57)}..." image: is required`],
  },
  // image
  { name: 'image: missing', yaml: ep('name: ex', 'wsgi: w'), problems: ['valohai.yaml:1:3: endpoint "ex" image: is required'] },
  { name: 'image: a list', yaml: ep('name: ex', 'image: [a]', 'wsgi: w'), problems: ['valohai.yaml:3:12: endpoint "ex" image: must be a string (got a list)'] },
  // server-command / wsgi: oneOf required
  { name: 'neither server-command nor wsgi', yaml: ep('name: ex', 'image: i'), problems: ['valohai.yaml:1:3: endpoint "ex": needs server-command or wsgi (exactly one of them)'] },
  {
    name: 'both server-command and wsgi: reported at the later key',
    yaml: ep('name: ex', 'image: i', 'wsgi: w', 'server-command: s'),
    problems: ['valohai.yaml:5:5: endpoint "ex" server-command: cannot be given together with wsgi (exactly one of them)'],
  },
  {
    name: 'server-command present but empty still counts as given (oneOf is about keys)',
    yaml: ep('name: ex', 'image: i', 'server-command:'),
    problems: ['valohai.yaml:4:5: endpoint "ex" server-command: must be a string or a list of strings (got an empty value)'],
  },
  { name: 'server-command: a number', yaml: ep('name: ex', 'image: i', 'server-command: 5'), problems: ['valohai.yaml:4:21: endpoint "ex" server-command: must be a string or a list of strings (got a number (5))'] },
  { name: 'server-command: a mapping', yaml: ep('name: ex', 'image: i', 'server-command: {a: b}'), problems: ['valohai.yaml:4:21: endpoint "ex" server-command: must be a string or a list of strings (got a mapping)'] },
  {
    // Beyond the schema (which takes any string): an empty or blank item runs nothing.
    name: 'server-command: list items must be strings, not empty or blank, each reported',
    yaml: ep('name: ex', 'image: i', 'server-command: [a, 1, true, "", " "]'),
    problems: [
      'valohai.yaml:4:25: endpoint "ex" server-command[1]: must be a string (got a number (1))',
      'valohai.yaml:4:28: endpoint "ex" server-command[2]: must be a boolean (got a boolean (true))'.replace('must be a boolean', 'must be a string'),
      'valohai.yaml:4:34: endpoint "ex" server-command[3]: must not be empty or blank (got a string (""))',
      'valohai.yaml:4:38: endpoint "ex" server-command[4]: must not be empty or blank (got a string (" "))',
    ],
  },
  // Beyond the schema (which takes any string): an empty or blank command runs nothing.
  { name: 'server-command: an empty string', yaml: ep('name: ex', 'image: i', 'server-command: ""'), problems: ['valohai.yaml:4:21: endpoint "ex" server-command: must not be empty or blank (got a string (""))'] },
  { name: 'server-command: a blank string', yaml: ep('name: ex', 'image: i', "server-command: '  '"), problems: ['valohai.yaml:4:21: endpoint "ex" server-command: must not be empty or blank (got a string ("  "))'] },
  { name: 'server-command: an empty list', yaml: ep('name: ex', 'image: i', 'server-command: []'), problems: ['valohai.yaml:4:21: endpoint "ex" server-command: must not be an empty list'] },
  { name: 'wsgi: a number', yaml: ep('name: ex', 'image: i', 'wsgi: 3'), problems: ['valohai.yaml:4:11: endpoint "ex" wsgi: must be a string (got a number (3))'] },
  { name: 'wsgi: an empty string', yaml: ep('name: ex', 'image: i', "wsgi: ''"), problems: ['valohai.yaml:4:11: endpoint "ex" wsgi: must not be empty or blank (got a string (""))'] },
  { name: 'wsgi: no module', yaml: ep('name: ex', 'image: i', "wsgi: ':app'"), problems: ['valohai.yaml:4:11: endpoint "ex" wsgi: must be module or module:callable (got a string (":app"))'] },
  { name: 'wsgi: no callable after the colon', yaml: ep('name: ex', 'image: i', "wsgi: 'app:'"), problems: ['valohai.yaml:4:11: endpoint "ex" wsgi: must be module or module:callable (got a string ("app:"))'] },
  // port
  { name: 'port: quoted is a string', yaml: ep(...base, 'port: "8000"'), problems: ['valohai.yaml:5:11: endpoint "ex" port: must be a number (got a string ("8000"))'] },
  { name: 'port: below 1025', yaml: ep(...base, 'port: 80'), problems: ['valohai.yaml:5:11: endpoint "ex" port: must be between 1025 and 65535 (got 80)'] },
  { name: 'port: above 65535', yaml: ep(...base, 'port: 65536'), problems: ['valohai.yaml:5:11: endpoint "ex" port: must be between 1025 and 65535 (got 65536)'] },
  { name: 'port: .inf is not a JSON number', yaml: ep(...base, 'port: .inf'), problems: ['valohai.yaml:5:11: endpoint "ex" port: must be a number (got a non-finite number (.inf))'] },
  { name: 'port: yes is a boolean (YAML 1.1, as valohai-yaml reads it)', yaml: ep(...base, 'port: yes'), problems: ['valohai.yaml:5:11: endpoint "ex" port: must be a number (got a boolean (yes))'] },
  // Beyond the schema (type "number"): a fraction is no port.
  { name: 'port: a fraction within the bounds', yaml: ep(...base, 'port: 8000.5'), problems: ['valohai.yaml:5:11: endpoint "ex" port: must be an integer from 1025 to 65535 (got 8000.5)'] },
  { name: 'port: a whole number written as a float is an integer', yaml: ep(...base, 'port: 8080.0'), problems: [], endpoints: ['ex'] },
  { name: 'port: 1025 and 65535 are the bounds', yaml: ep(...base, 'port: 1025') + ep('name: fx', 'image: i', 'wsgi: w', 'port: 65535'), problems: [], endpoints: ['ex', 'fx'] },
  // description
  { name: 'description: on is a boolean', yaml: ep(...base, 'description: on'), problems: ['valohai.yaml:5:18: endpoint "ex" description: must be a string (got a boolean (on))'] },
  { name: 'description: y stays a string (as in PyYAML)', yaml: ep(...base, 'description: y'), problems: [], endpoints: ['ex'] },
  {
    name: 'numbers as PyYAML reads them: e1 and 1e3 are strings, 1.5e+3 is a number, 09 is a string',
    yaml: ep('name: e1', 'image: 1e3', 'wsgi: w', 'port: 1.5e+3') + ep('name: e2', 'image: i', 'wsgi: w', 'port: 1e3') + ep('name: e3', 'image: i', 'wsgi: w', 'port: 09'),
    problems: ['valohai.yaml:10:11: endpoint "e2" port: must be a number (got a string ("1e3"))', 'valohai.yaml:15:11: endpoint "e3" port: must be a number (got a string ("09"))'],
    endpoints: ['e1'],
  },
  { name: 'description: a date is not a string', yaml: ep(...base, 'description: 2024-01-31'), problems: ['valohai.yaml:5:18: endpoint "ex" description: must be a string (got a date (2024-01-31))'] },
  // additionalProperties: false on the endpoint
  { name: 'unknown field with a close name', yaml: ep(...base, 'prot: 8000'), problems: ['valohai.yaml:5:5: endpoint "ex" prot: is not a field of an endpoint; did you mean port?'] },
  { name: 'unknown field spelt with _', yaml: ep('name: ex', 'image: i', 'server_command: s'), problems: ['valohai.yaml:4:5: endpoint "ex" server_command: is not a field of an endpoint; did you mean server-command?', 'valohai.yaml:1:3: endpoint "ex": needs server-command or wsgi (exactly one of them)'].reverse() },
  {
    name: 'unknown field without a close name lists the allowed ones',
    yaml: ep(...base, 'replicas: 2'),
    problems: ['valohai.yaml:5:5: endpoint "ex" replicas: is not a field of an endpoint (allowed: name, description, image, port, server-command, wsgi, files, node-selector, resources, tolerations)'],
  },
  // files
  { name: 'files: not a list', yaml: ep(...base, 'files: model.pb'), problems: ['valohai.yaml:5:12: endpoint "ex" files: must be a list of files, each with name and path (got a string ("model.pb"))'] },
  { name: 'files: item not a mapping', yaml: ep(...base, 'files:', '  - model.pb'), problems: ['valohai.yaml:6:9: endpoint "ex" files[0]: must be a mapping with name and path (got a string ("model.pb"))'] },
  {
    name: 'files: name and path are required',
    yaml: ep(...base, 'files:', '  - description: d'),
    problems: ['valohai.yaml:6:9: endpoint "ex" files[0].name: is required', 'valohai.yaml:6:9: endpoint "ex" files[0].path: is required'],
  },
  {
    name: 'files: no other fields (additionalProperties false)',
    yaml: ep(...base, 'files:', '  - name: m', '    path: m.pb', '    size: 3'),
    problems: ['valohai.yaml:8:9: endpoint "ex" files[0].size: is not a field of a file (allowed: name, description, path)'],
  },
  {
    name: 'files: name, path and description must be strings',
    yaml: ep(...base, 'files:', '  - {name: 1, path: [p], description: no}'),
    problems: [
      'valohai.yaml:6:16: endpoint "ex" files[0].name: must be a string (got a number (1))',
      'valohai.yaml:6:25: endpoint "ex" files[0].path: must be a string (got a list)',
      'valohai.yaml:6:43: endpoint "ex" files[0].description: must be a string (got a boolean (no))',
    ],
  },
  {
    name: 'files: path must stay inside the code directory',
    yaml: ep(...base, 'files:', '  - {name: a, path: /etc/passwd}', '  - {name: b, path: ../x}', '  - {name: c, path: a/../../x}', '  - {name: d, path: ""}', '  - {name: f, path: a/../b}'),
    problems: [
      'valohai.yaml:6:25: endpoint "ex" files[0].path: must be a relative file path inside the code directory',
      'valohai.yaml:7:25: endpoint "ex" files[1].path: must be a relative file path inside the code directory',
      'valohai.yaml:8:25: endpoint "ex" files[2].path: must be a relative file path inside the code directory',
      'valohai.yaml:9:25: endpoint "ex" files[3].path: must be a relative file path inside the code directory',
    ],
  },
  {
    name: 'files: two files with one name or one path',
    yaml: ep(...base, 'files:', '  - {name: m, path: a.pb}', '  - {name: m, path: b.pb}', '  - {name: n, path: ./a.pb}'),
    problems: [
      'valohai.yaml:7:16: endpoint "ex" files[1].name: duplicate file name "m"; first at valohai.yaml:6:16',
      'valohai.yaml:8:25: endpoint "ex" files[2].path: same path as file "m" at valohai.yaml:6:25',
    ],
  },
  // node-selector
  { name: 'node-selector: must contain =', yaml: ep(...base, 'node-selector: gpu'), problems: ['valohai.yaml:5:20: endpoint "ex" node-selector: must match = (a node label such as accelerator=tesla-v100)'] },
  { name: 'node-selector: a mapping', yaml: ep(...base, 'node-selector: {a: b}'), problems: ['valohai.yaml:5:20: endpoint "ex" node-selector: must be a string (got a mapping)'] },
  // resources
  { name: 'resources: not a mapping', yaml: ep(...base, 'resources: 2'), problems: ['valohai.yaml:5:16: endpoint "ex" resources: must be a mapping of cpu, memory, ephemeral-storage and devices (got a number (2))'] },
  { name: 'resources: unknown key', yaml: ep(...base, 'resources:', '  gpu: 1'), problems: ['valohai.yaml:6:7: endpoint "ex" resources.gpu: is not a field of resources (allowed: cpu, memory, ephemeral-storage, devices)'] },
  { name: 'resources.cpu: not a mapping', yaml: ep(...base, 'resources:', '  cpu: 2'), problems: ['valohai.yaml:6:12: endpoint "ex" resources.cpu: must be a mapping with min and/or max (got a number (2))'] },
  {
    name: 'resources.cpu / memory: min and max are numbers, nothing else allowed',
    yaml: ep(...base, 'resources:', '  cpu: {min: "1", max: 2, request: 1}', '  memory: {max: 1Gi}'),
    problems: [
      'valohai.yaml:6:18: endpoint "ex" resources.cpu.min: must be a number (got a string ("1"))',
      'valohai.yaml:6:31: endpoint "ex" resources.cpu.request: is not a field of resources.cpu (allowed: min, max)',
      'valohai.yaml:7:21: endpoint "ex" resources.memory.max: must be a number (got a string ("1Gi"))',
    ],
  },
  {
    name: 'resources.ephemeral-storage: integers (2048.0 is one, 1.5 is not)',
    yaml: ep(...base, 'resources:', '  ephemeral-storage: {min: 1.5, max: 2048.0}'),
    problems: ['valohai.yaml:6:32: endpoint "ex" resources.ephemeral-storage.min: must be an integer (got a number (1.5))'],
  },
  { name: 'resources: min larger than max', yaml: ep(...base, 'resources:', '  memory: {min: 200, max: 100}'), problems: ['valohai.yaml:6:21: endpoint "ex" resources.memory.min: must not be larger than max (200 > 100)'] },
  { name: 'resources.devices: not a mapping', yaml: ep(...base, 'resources:', '  devices: [gpu]'), problems: ['valohai.yaml:6:16: endpoint "ex" resources.devices: must be a mapping of device name to count (got a list)'] },
  {
    name: 'resources.devices: counts are numbers >= 1',
    yaml: ep(...base, 'resources:', '  devices:', '    nvidia.com/gpu: 0', '    amd.com/gpu: two', '    x: 1.5'),
    problems: [
      'valohai.yaml:7:25: endpoint "ex" resources.devices["nvidia.com/gpu"]: must be a number of at least 1 (got a number (0))',
      'valohai.yaml:8:22: endpoint "ex" resources.devices["amd.com/gpu"]: must be a number of at least 1 (got a string ("two"))',
    ],
  },
  {
    name: 'resources.devices: an empty name is not constrained by ^.+$ and is ignored with a warning',
    yaml: ep(...base, 'resources:', '  devices:', '    "": x'),
    problems: [],
    warnings: ['valohai.yaml:7:9: warning: endpoint "ex" resources.devices[""]: a device without a name is ignored'],
    endpoints: ['ex'],
  },
  // tolerations
  { name: 'tolerations: not a list', yaml: ep(...base, 'tolerations: {key: a}'), problems: ['valohai.yaml:5:18: endpoint "ex" tolerations: must be a list of tolerations (got a mapping)'] },
  { name: 'tolerations: item not a mapping', yaml: ep(...base, 'tolerations: [a]'), problems: ['valohai.yaml:5:19: endpoint "ex" tolerations[0]: must be a mapping of key, operator, value and effect (got a string ("a"))'] },
  {
    name: 'tolerations: enums, types and unknown keys',
    yaml: ep(...base, 'tolerations:', '  - {key: 1, operator: Equals, value: 2, effect: NoRun, seconds: 3}'),
    problems: [
      'valohai.yaml:6:15: endpoint "ex" tolerations[0].key: must be a string (got a number (1))',
      'valohai.yaml:6:28: endpoint "ex" tolerations[0].operator: must be one of Exists, Equal (got a string ("Equals"))',
      'valohai.yaml:6:43: endpoint "ex" tolerations[0].value: must be a string (got a number (2))',
      'valohai.yaml:6:54: endpoint "ex" tolerations[0].effect: must be one of PreferNoSchedule, NoSchedule, NoExecute (got a string ("NoRun"))',
      'valohai.yaml:6:61: endpoint "ex" tolerations[0].seconds: is not a field of a toleration (allowed: key, operator, value, effect)',
    ],
  },
  {
    name: 'tolerations: without a key the operator must be Exists (oneOf)',
    yaml: ep(...base, 'tolerations:', '  - {operator: Equal, value: v}', '  - {operator: Exists}', '  - {effect: NoSchedule}', '  - {key: k, operator: Equal}'),
    problems: ['valohai.yaml:6:20: endpoint "ex" tolerations[0].operator: must be Exists when the toleration has no key'],
  },
  // Whole endpoints
  { name: 'endpoint: empty', yaml: '- endpoint:\n', problems: ['valohai.yaml:1:3: endpoint #1: must be a mapping of endpoint fields such as name, image and server-command (got an empty value)'] },
  { name: 'endpoint: a string', yaml: '- endpoint: predict\n', problems: ['valohai.yaml:1:13: endpoint #1: must be a mapping of endpoint fields such as name, image and server-command (got a string ("predict"))'] },
  {
    name: 'every problem of an endpoint is reported, not just the first',
    yaml: ep('name: E', 'port: 1', 'files: x', 'node-selector: a', 'colour: red'),
    problems: [
      'valohai.yaml:1:3: endpoint "E" image: is required',
      'valohai.yaml:1:3: endpoint "E": needs server-command or wsgi (exactly one of them)',
      'valohai.yaml:2:11: endpoint "E" name: must match ^[a-z][a-z0-9-]+$',
      'valohai.yaml:3:11: endpoint "E" port: must be between 1025 and 65535 (got 1)',
      'valohai.yaml:4:12: endpoint "E" files: must be a list of files, each with name and path (got a string ("x"))',
      'valohai.yaml:5:20: endpoint "E" node-selector: must match = (a node label such as accelerator=tesla-v100)',
      'valohai.yaml:6:5: endpoint "E" colour: is not a field of an endpoint (allowed: name, description, image, port, server-command, wsgi, files, node-selector, resources, tolerations)',
    ],
  },
  {
    name: 'problems of several endpoints are all reported; the valid one is still returned',
    yaml: ep('name: a1', 'image: i', 'wsgi: w') + ep('name: Bad', 'image: i', 'wsgi: w') + ep('name: c1', 'image: 1', 'wsgi: w'),
    problems: ['valohai.yaml:6:11: endpoint "Bad" name: must match ^[a-z][a-z0-9-]+$', 'valohai.yaml:11:12: endpoint "c1" image: must be a string (got a number (1))'],
    endpoints: ['a1'],
  },
  {
    name: 'duplicate endpoint names: both positions',
    yaml: ep(...base) + ep(...baseSc),
    problems: ['valohai.yaml:6:11: endpoint "ex" name: duplicate endpoint name; first defined at valohai.yaml:2:11'],
    endpoints: ['ex'],
  },
  {
    name: 'duplicate key inside an endpoint',
    yaml: ep(...base, 'image: python:3.13'),
    problems: ['valohai.yaml:5:5: endpoint "ex" image: duplicate key; first written at valohai.yaml:3:5'],
  },
  {
    name: 'duplicate key inside a file item',
    yaml: ep(...base, 'files:', '  - name: m', '    path: a', '    path: b'),
    problems: ['valohai.yaml:8:9: endpoint "ex" files[0].path: duplicate key; first written at valohai.yaml:7:9'],
  },
  {
    name: 'fields indented one level too little: endpoint is empty, fields sit beside it',
    yaml: '- endpoint:\n  name: e\n  image: i\n  wsgi: w\n',
    problems: [
      'valohai.yaml:1:3: endpoint #1: must be a mapping of endpoint fields such as name, image and server-command (got an empty value)',
      'valohai.yaml:2:3: item 1: "name" cannot be next to "endpoint" in one item; if it is an endpoint field, indent it under endpoint:',
      'valohai.yaml:3:3: item 1: "image" cannot be next to "endpoint" in one item; if it is an endpoint field, indent it under endpoint:',
      'valohai.yaml:4:3: item 1: "wsgi" cannot be next to "endpoint" in one item; if it is an endpoint field, indent it under endpoint:',
    ],
  },
  {
    name: 'an endpoint and a step in one item',
    yaml: '- endpoint: {name: ex, image: i, wsgi: w}\n  step: {name: s}\n',
    problems: ['valohai.yaml:2:3: item 1: "step" cannot share an item with "endpoint"; start a new "- step:" item'],
  },
  // YAML features valohai-yaml (PyYAML) supports
  {
    name: 'anchors, aliases and << merge keys',
    yaml: '- endpoint: &common\n    name: a1\n    image: &img python:3.12\n    wsgi: app:app\n- endpoint:\n    <<: *common\n    name: a2\n- endpoint:\n    name: a3\n    image: *img\n    server-command: python a3.py\n',
    problems: [],
    endpoints: ['a1', 'a2', 'a3'],
  },
  {
    name: 'a merged field keeps the position where it is written',
    yaml: '- step: &defaults\n    name: s\n    image: 3\n- endpoint:\n    <<: *defaults\n    name: a1\n    wsgi: w\n',
    problems: ['valohai.yaml:3:12: endpoint "a1" image: must be a string (got a number (3))'],
  },
  {
    name: '<< must merge mappings',
    yaml: ep(...base, '<<: 3'),
    problems: ['valohai.yaml:5:9: endpoint "ex" <<: must merge a mapping or a list of mappings (got a number (3))'],
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const got = parseValohaiYaml(c.yaml);
    t.strictSame(got.problems.map((p) => formatProblem(p)), c.problems, 'problems');
    t.strictSame(got.warnings.map((p) => formatProblem(p, 'warning')), c.warnings ?? [], 'warnings');
    t.strictSame(got.endpoints.map((e) => e.name), c.endpoints ?? [], 'endpoints');
  });
}

t.test('a valid endpoint with every field gives every field', async (t) => {
  const yaml = ep(
    'name: full',
    'description: all of it',
    'image: python:3.12',
    'port: 8080',
    'server-command: [gunicorn, -b, "0.0.0.0:8080", app:app]',
    'files:',
    '  - {name: model, path: models/m.pb, description: weights}',
    'node-selector: pool=gpu',
    'resources:',
    '  cpu: {min: 0.5, max: 2}',
    '  memory: {min: 512}',
    '  ephemeral-storage: {max: 1024}',
    '  devices: {nvidia.com/gpu: 2}',
    'tolerations:',
    '  - {operator: Exists}',
    '  - {}',
    '  - {key: k, operator: Equal, value: v, effect: NoExecute}',
  );
  const { endpoints, problems } = parseValohaiYaml(yaml, 'app/valohai.yaml');
  t.same(problems, []);
  t.strictSame(endpoints, [
    {
      name: 'full',
      image: 'python:3.12',
      description: 'all of it',
      port: 8080,
      command: { kind: 'exec', argv: ['gunicorn', '-b', '0.0.0.0:8080', 'app:app'] },
      serverCommand: ['gunicorn', '-b', '0.0.0.0:8080', 'app:app'],
      files: [{ name: 'model', path: 'models/m.pb', description: 'weights' }],
      resources: { cpu: { min: 0.5, max: 2 }, memory: { min: 512 }, 'ephemeral-storage': { max: 1024 }, devices: { 'nvidia.com/gpu': 2 } },
      nodeSelector: 'pool=gpu',
      tolerations: [{ operator: 'Exists' }, {}, { key: 'k', operator: 'Equal', value: 'v', effect: 'NoExecute' }],
      location: { file: 'app/valohai.yaml', line: 1, column: 3 },
    },
  ]);
});

t.test('port defaults to 8000; one written as a float with no fraction is kept as the integer', async (t) => {
  const { endpoints, problems } = parseValohaiYaml(ep(...base) + ep('name: fx', 'image: i', 'wsgi: w', 'port: 8080.0'));
  t.same(problems, []);
  t.same(endpoints.map((e) => e.port), [8000, 8080]);
});

t.test('suggest: the field a misspelt key most likely meant', async (t) => {
  const fields = ['name', 'description', 'image', 'port', 'server-command', 'wsgi', 'files', 'node-selector', 'resources', 'tolerations'];
  const cases: [string, string | undefined][] = [
    ['prot', 'port'],
    ['Image', 'image'],
    ['server_command', 'server-command'],
    ['servercommand', 'server-command'],
    ['descripton', 'description'],
    ['toleration', 'tolerations'],
    ['file', 'files'],
    ['gpu', undefined],
    ['replicas', undefined],
    ['x', undefined],
  ];
  for (const [input, want] of cases) t.equal(suggest(input, fields), want, input);
});
