import type { Command } from './command.ts';
import { UsageError, positionalsOnly } from './command.ts';
import { formatProblem, readValohaiYaml } from '../../builder/valohai-yaml/index.ts';

/**
 * `portico validate [valohai.yaml]`: checks a valohai.yaml offline. Promises: exit 0 with the
 * endpoints as a JSON array on stdout when the file is valid (warnings, if any, on stderr);
 * exit 1 with one `file:line:column: message` line per problem on stderr otherwise (a missing
 * or unreadable file included); exit 2 for a bad command line.
 */
export const validateCommand: Command = {
  name: 'validate',
  help: `Usage: portico validate [valohai.yaml]

Checks the endpoints of a valohai.yaml (default: ./valohai.yaml) against the valohai.yaml
endpoint schema, without contacting the controller.

Valid: prints the endpoints as a JSON array on stdout and exits 0.
Invalid: prints every problem as file:line:column: message on stderr and exits 1.
Warnings (e.g. an unknown top-level item kind, which is ignored) go to stderr and do not fail.

Options:
  -h, --help   Show this help.
`,
  async run(args) {
    const positionals = positionalsOnly(args);
    if (positionals.length > 1) throw new UsageError('takes at most one file');
    const path = positionals[0] ?? 'valohai.yaml';
    const { endpoints, problems, warnings } = await readValohaiYaml(path);
    for (const w of warnings) process.stderr.write(formatProblem(w, 'warning') + '\n');
    if (problems.length > 0) {
      for (const p of problems) process.stderr.write(formatProblem(p) + '\n');
      return 1;
    }
    process.stdout.write(JSON.stringify(endpoints, null, 2) + '\n');
    return 0;
  },
};
