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
// The linbit tests without the few that spend seconds on large random streams (each mutant runs these; a
// test runs when its name matches, and the runner's root matches any negative pattern, so they are listed):
// the round trips and size counts stay in npm test.
const linbitFast =
  '^(magic|BEGIN_STREAM|END_STREAM|unknown|DATA|truncation|offsets|format 1.0|begin-info|declared sha256|stream digest|encoder:|stopping|empty input|the reference|nothing may follow|tampered)';
const groupsFast = '^(v2: |group|a corrupt|declared layouts|encoder with|records decoded|a small stream)';
/**
 * The modules and the tests run per mutant: the only place that names them. Line ranges
 * (file:first-last) select a module's functions in a bigger file; update them when code moves.
 */
export const modules = {
  access: {
    mutate: ['src/receiver/access.ts'],
    command: [
      run('unit/access'),
      run('unit/access-rules'),
      run('unit/rpc-receiver-state', 'target authorisation'),
      run('service/mutation-guards', 'boundary|another identity'),
    ],
  },
  // The record rules: gRPC begin/record checks, the pipe-mode checks of applyMessages, the payload check, and the integrity core's bounds/order/counts.
  records: {
    mutate: ['src/receiver/record-checks.ts', 'src/receiver/receiver.ts', 'src/receiver/decode-data.ts'],
    command: [
      run('unit/record-checks'),
      run('unit/rpc-decode'),
      run('unit/receiver-pieces'),
      run('unit/receiver-apply'),
      run('service/mutation-guards', 'straddling|checkpoint'),
    ],
  },
  // Unit tests only (the gRPC tier's receiver-state took 13 s per mutant): unit/checkpoint-fields checks the file field by field.
  checkpoint: {
    mutate: ['src/receiver/checkpoint.ts'],
    command: [run('unit/checkpoint-fields'), run('unit/checkpoint-identity'), run('unit/rpc-receiver-state', 'checkpoints|state directory')],
  },
  digest: { mutate: ['src/stream/digest.ts'], command: [run('unit/digest'), run('unit/linbit', 'digest|checksum'), run('unit/rpc-decode')] },
  // The integrity core (ledger, bounds, order, payload checksums) with its own unit test first.
  integrity: { mutate: ['src/stream/integrity.ts'], command: [run('unit/integrity'), run('unit/record-checks'), run('unit/digest')] },
  // The LINBIT codec (src/stream/linbit/): the decoder has ~890 mutants, ~10 s each on a shared machine.
  'linbit-encoder': {
    mutate: ['src/stream/linbit/encode.ts'],
    command: [run('unit/linbit', linbitFast), run('unit/linbit-golden'), run('unit/linbit-groups', groupsFast), run('unit/linbit-encode')],
    timeoutMS: 8000,
  },
  'linbit-decoder': {
    mutate: ['src/stream/linbit/decode.ts'],
    command: [run('unit/linbit', linbitFast), run('unit/linbit-golden'), run('unit/linbit-groups', groupsFast), run('unit/linbit-decode-where')],
    timeoutMS: 8000,
  },
  'pool-lock': { mutate: ['src/thin/pool-lock.ts'], command: [run('unit/pool-lock'), run('tools/pool-lock')] },
  'state-lock': { mutate: ['src/receiver/state-lock.ts'], command: [run('unit/state-lock')] },
};
const name = process.env.STRYKER_MODULE ?? 'access';
const m = modules[name];
if (!m) throw new Error(`STRYKER_MODULE=${name}: one of ${Object.keys(modules).join(', ')}`);

// STRYKER_MUTATE=file:first-last re-checks a few lines of a module (its survivors) without the whole run.
const only = process.env.STRYKER_MUTATE;

export default {
  mutate: only ? only.split(',') : m.mutate,
  testRunner: 'command',
  commandRunner: { command: m.command.join(' && ') },
  buildCommand: 'npx tsc -p tsconfig.json',
  coverageAnalysis: 'off',
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
  timeoutMS: m.timeoutMS ?? 20000,
  timeoutFactor: 2,
  reporters: ['clear-text', 'json', 'progress-append-only'],
  jsonReporter: { fileName: `reports/mutation/${name}${only ? '-lines' : ''}.json` },
  ignorePatterns: ['dist', '.vm-results', 'bench/results', 'reports', '.stryker-tmp'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
