/**
 * The public API of the valohai.yaml endpoint parser (the same as `parse.ts`, which also exports
 * all of it): `readValohaiYaml`, `parseValohaiYaml`, `formatProblem` and their types.
 */
export * from './parse.ts';
