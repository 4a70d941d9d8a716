/**
 * What the valohai.yaml parser reports: one `Problem` per thing wrong with the file, each with a
 * position, so that a user can fix every problem in one pass.
 */

/**
 * One problem found in a valohai.yaml. `line` and `column` are 1-based (a column counts UTF-16
 * code units, as editors and the `yaml` package do); both are 0 when the problem concerns the
 * file as a whole (unreadable, too large). `path` names the field in the words of the file, e.g.
 * `endpoint "predict" files[0].path`, or is empty for the file itself.
 */
export interface Problem {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly message: string;
}

/**
 * Renders a problem as `file:line:column: path: message` (the form compilers use, so terminals
 * and editors link it); `file: message` when it has no position, and no `path: ` when the path
 * is empty. `severity` 'warning' inserts `warning: ` after the position.
 */
export function formatProblem(p: Problem, severity: 'error' | 'warning' = 'error'): string {
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.column}` : p.file;
  const what = p.path === '' ? p.message : `${p.path}: ${p.message}`;
  return `${where}: ${severity === 'warning' ? 'warning: ' : ''}${what}`;
}

/** Orders problems by position (whole-file problems first); stable for equal positions. */
export function sortProblems(problems: readonly Problem[]): Problem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.column - b.column);
}
