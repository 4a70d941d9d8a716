import t from 'tap';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readValohaiYaml, formatProblem } from '../../../builder/valohai-yaml/index.ts';
import type { EndpointDefinition } from '../../../builder/valohai-yaml/index.ts';

const dir = fileURLToPath(new URL('../../fixtures/valohai-yaml/', import.meta.url));

/** name, port, and the command as `shell:...` / `exec:a|b` / `wsgi:...` */
type Summary = [name: string, port: number, command: string];
const summary = (e: EndpointDefinition): Summary => [
  e.name,
  e.port,
  e.command.kind === 'shell' ? `shell:${e.command.command}` : e.command.kind === 'exec' ? `exec:${e.command.argv.join('|')}` : `wsgi:${e.command.module}`,
];

const greetAndPredict: Summary[] = [
  ['greet', 8000, 'shell:python -m wsgiref.simple_server'],
  ['predict-digit', 8000, 'wsgi:predict:predict'],
];

/** Every fixture file and what parsing it must give. A file without an entry fails the suite. */
const expected: Record<string, Summary[] | { problems: string[] }> = {
  'real-world/DrazenDodik__valohai-public-examples__valohai.yaml': greetAndPredict,
  'real-world/DrazenDodik__valohaiquickstart__valohai.yaml': [['digit-predict', 8000, 'wsgi:predict:mypredictor']],
  'real-world/DrazenDodik__vh-dash-deployment__valohai.yaml': [['digits', 8000, 'shell:python app.py']],
  'real-world/JuhaKiili__model-monitoring-test__valohai.yaml': [['wsgi-endpoint', 8000, 'wsgi:endpoint:predict_wsgi']],
  'real-world/Nomiluks__valohai-demo__valohai.yaml': greetAndPredict,
  'real-world/SofiaChar__streamlit-demo__valohai.yaml': [
    ['loyalty-sample', 8000, 'shell:uvicorn loyalty_app:app --host 0.0.0.0 --port 8000'],
    ['r-shiny', 6362, `shell:R -e "library(shiny)" && R -e "shiny::runApp('r_demo', host='0.0.0.0', port=6362, launch.browser = FALSE)"`],
    [
      'streamlit-sample',
      8501,
      'shell:pip install -r streamlit_sample/requirements.txt && streamlit run streamlit_sample/Chatbot.py --server.port=8501 --server.address=0.0.0.0 --server.baseUrlPath=$VH_DEFAULT_PREFIX',
    ],
    [
      'streamlit-inference-ui',
      8502,
      // A folded block scalar (`>`): one line, with the trailing newline YAML keeps.
      'shell:pip install streamlit requests pandas && streamlit run streamlit_app_ui.py --server.port=8502 --server.address=0.0.0.0 --server.baseUrlPath=$VH_DEFAULT_PREFIX\n',
    ],
  ],
  'real-world/valohai__tensorflow-example__valohai.yaml': greetAndPredict,
  'real-world/valohai__yolov3-tf2__valohai.yaml': [['predict', 8000, 'wsgi:predict_wsgi:predict_wsgi']],
  'valohai-yaml-repo/endpoint-example.yaml': [
    ['server-endpoint', 1453, 'shell:python run_server.py'],
    ['wsgi-endpoint', 8000, 'wsgi:predict_wsgi:predict_wsgi'],
    ['limited-endpoint', 8000, 'shell:python run_server.py'],
    ['accelerated-endpoint', 8000, 'shell:python run_server.py'],
    ['tolerant-endpoint', 8000, 'shell:python run_server.py'],
    ['ephemeral-storage-endpoint', 8000, 'shell:python run_server.py'],
  ],
  'valohai-yaml-repo/endpoint-names-valid.yaml': [
    ['server-endpoint-12', 1453, 'shell:python run_server.py'],
    ['wsgi-endpoint', 8000, 'wsgi:predict_wsgi:predict_wsgi'],
  ],
  'valohai-yaml-repo/endpoint-names-invalid.yaml': {
    problems: [
      'endpoint-names-invalid.yaml:2:11: endpoint "Server-endpoint" name: must match ^[a-z][a-z0-9-]+$',
      'endpoint-names-invalid.yaml:8:11: endpoint "3-server-endpoint" name: must match ^[a-z][a-z0-9-]+$',
      'endpoint-names-invalid.yaml:14:11: endpoint "server@endpoint" name: must match ^[a-z][a-z0-9-]+$',
      'endpoint-names-invalid.yaml:20:11: endpoint "wsgi_endpoint" name: must match ^[a-z][a-z0-9-]+$',
    ],
  },
  'valohai-yaml-repo/pipeline-deployment-edge-example.yaml': [['predict-digit', 8000, 'wsgi:predict_wsgi:predict_wsgi']],
  'valohai-yaml-repo/pipeline-example.yaml': [['predict-digit', 8000, 'wsgi:predict_wsgi:predict_wsgi']],
  'valohai-yaml-repo/pipeline-with-automatic-deployment-creation.yaml': [['foretell-my-future', 8000, 'wsgi:crystal_ball_wsgi:crystal_ball_wsgi']],
};

function yamlFiles(d: string): string[] {
  return readdirSync(d).flatMap((name) => {
    const p = join(d, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return name.endsWith('.md') ? [] : [relative(dir, p)];
  });
}

const files = yamlFiles(dir).sort();

t.test('every fixture file has an expectation, and every expectation a file', async (t) => {
  t.same(files, Object.keys(expected).sort());
});

for (const file of files) {
  t.test(file, async (t) => {
    const want = expected[file];
    if (want === undefined) return t.fail(`no expectation for ${file}`);
    const name = file.split('/').pop() as string;
    const got = await readValohaiYaml(join(dir, file), name);
    t.same(got.warnings, [], 'no warnings');
    if (Array.isArray(want)) {
      t.same(got.problems.map((p) => formatProblem(p)), [], 'valid');
      t.same(got.endpoints.map(summary), want);
    } else {
      t.same(got.problems.map((p) => formatProblem(p)), want.problems);
      t.same(got.endpoints.map((e) => e.name), [], 'no endpoint of an invalid name is returned');
    }
  });
}

t.test('endpoint-example.yaml: every field of the 6 endpoints', async (t) => {
  const { endpoints, problems } = await readValohaiYaml(join(dir, 'valohai-yaml-repo/endpoint-example.yaml'), 'valohai.yaml');
  t.same(problems, []);
  const at = (line: number) => ({ file: 'valohai.yaml', line, column: 3 });
  t.strictSame(endpoints, [
    {
      name: 'server-endpoint',
      image: 'python:3.6',
      port: 1453,
      command: { kind: 'shell', command: 'python run_server.py' },
      serverCommand: 'python run_server.py',
      files: [],
      location: at(1),
    },
    {
      name: 'wsgi-endpoint',
      image: 'tensorflow/tensorflow:1.3.0-py3',
      description: 'predict digits from image inputs',
      port: 8000,
      command: { kind: 'wsgi', module: 'predict_wsgi:predict_wsgi' },
      wsgi: 'predict_wsgi:predict_wsgi',
      files: [{ name: 'model', path: 'model.pb', description: 'Model output file from TensorFlow' }],
      location: at(7),
    },
    {
      name: 'limited-endpoint',
      image: 'python:3.9',
      port: 8000,
      command: { kind: 'shell', command: 'python run_server.py' },
      serverCommand: ['python run_server.py'],
      files: [],
      resources: { cpu: { min: 0.1, max: 1 }, memory: { min: 50, max: 100 } },
      location: at(17),
    },
    {
      name: 'accelerated-endpoint',
      image: 'python:3.6',
      port: 8000,
      command: { kind: 'shell', command: 'python run_server.py' },
      serverCommand: 'python run_server.py',
      files: [],
      resources: { devices: { 'nvidia.com/gpu': 1 } },
      nodeSelector: 'accelerator=tesla-v100',
      location: at(30),
    },
    {
      name: 'tolerant-endpoint',
      image: 'python:3.6',
      port: 8000,
      command: { kind: 'shell', command: 'python run_server.py' },
      serverCommand: 'python run_server.py',
      files: [],
      tolerations: [{ key: 'key1', operator: 'Equal', value: 'value1', effect: 'NoSchedule' }],
      location: at(39),
    },
    {
      name: 'ephemeral-storage-endpoint',
      image: 'python:3.9',
      port: 8000,
      command: { kind: 'shell', command: 'python run_server.py' },
      serverCommand: 'python run_server.py',
      files: [],
      resources: { memory: { max: 64 }, 'ephemeral-storage': { min: 2048, max: 4096 } },
      location: at(49),
    },
  ]);
});
