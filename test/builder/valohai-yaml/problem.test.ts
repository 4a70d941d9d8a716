import t from 'tap';
import { formatProblem, sortProblems } from '../../../builder/valohai-yaml/problem.ts';
import type { Problem } from '../../../builder/valohai-yaml/problem.ts';

const p = (line: number, column: number, path = '', message = 'm'): Problem => ({ file: 'valohai.yaml', line, column, path, message });

t.test('formatProblem', async (t) => {
  const cases: [Problem, 'error' | 'warning' | undefined, string][] = [
    [p(12, 11, 'endpoint "Server-endpoint" name', 'must match ^[a-z][a-z0-9-]+$'), undefined, 'valohai.yaml:12:11: endpoint "Server-endpoint" name: must match ^[a-z][a-z0-9-]+$'],
    [p(1, 1, '', 'file is empty'), 'error', 'valohai.yaml:1:1: file is empty'],
    [p(0, 0, '', 'cannot read: no such file'), undefined, 'valohai.yaml: cannot read: no such file'],
    [p(3, 3, 'item 3', 'unknown kind'), 'warning', 'valohai.yaml:3:3: warning: item 3: unknown kind'],
    [p(0, 0, '', 'nothing to serve'), 'warning', 'valohai.yaml: warning: nothing to serve'],
  ];
  for (const [problem, severity, want] of cases) t.equal(formatProblem(problem, severity), want);
});

t.test('sortProblems orders by line then column, whole-file first, stable', async (t) => {
  const input = [p(3, 1, 'a'), p(1, 9, 'b'), p(0, 0, 'c'), p(1, 2, 'd'), p(3, 1, 'e')];
  t.strictSame(sortProblems(input).map((x) => x.path), ['c', 'd', 'b', 'a', 'e']);
  t.strictSame(input.map((x) => x.path), ['a', 'b', 'c', 'd', 'e'], 'input untouched');
});
