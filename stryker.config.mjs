/**
 * StrykerJS on the modules that protect data and access (npm run mutate, not
 * part of npm test): one run per module, chosen by STRYKER_MODULE, each with
 * only the fast tests that exercise it. The command test runner runs the
 * compiled test files; the mutants are compiled in once
 * (buildCommand) and switched on one at a time by Stryker's environment
 * variable, so each mutant costs one test run, not a rebuild.
 * Results: docs/testing.md.
 */
// Each test file runs in this process (no --test runner subprocesses), only the tests that exercise the module:
// on 2 shared cores every second per mutant is minutes per module.
const run = (file, pattern) => `node ${pattern ? `--test-name-pattern='${pattern}' ` : ''}dist/test/${file}.test.js`;
export const modules = {
  access: { mutate: ['src/receiver/access.ts'], command: [run('unit/access'), run('unit/rpc-receiver-state', 'target authorisation'), run('service/mutation-guards', 'boundary|another identity')] },
  records: { mutate: ['src/receiver/record-checks.ts'], command: [run('unit/record-checks'), run('unit/rpc-decode'), run('service/mutation-guards', 'straddling|checkpoint|ZERO')] },
  checkpoint: { mutate: ['src/receiver/checkpoint.ts'], command: [run('unit/checkpoint-identity'), run('unit/rpc-receiver-state', 'checkpoints|state directory'), run('service/receiver-state'), run('service/mutation-guards', 'checkpoint|another identity')] },
  digest: { mutate: ['src/stream/digest.ts', 'src/stream/integrity.ts'], command: [run('unit/digest'), run('unit/linbit', 'digest|checksum'), run('unit/rpc-decode')] },
  linbit: { mutate: ['src/stream/linbit/decode.ts'], command: [run('unit/linbit'), run('unit/linbit-golden')] },
  'pool-lock': { mutate: ['src/thin/pool-lock.ts'], command: [run('tools/pool-lock')] },
};
const name = process.env.STRYKER_MODULE ?? 'access';
const m = modules[name];
if (!m) throw new Error(`STRYKER_MODULE=${name}: one of ${Object.keys(modules).join(', ')}`);

export default {
  mutate: m.mutate,
  testRunner: 'command',
  commandRunner: { command: m.command.join(' && ') },
  buildCommand: 'npx tsc -p tsconfig.json',
  coverageAnalysis: 'off',
  concurrency: 1,
  timeoutMS: 20000,
  timeoutFactor: 2,
  reporters: ['clear-text', 'json', 'progress-append-only'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  ignorePatterns: ['dist', '.vm-results', 'bench/results', 'reports', '.stryker-tmp'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
