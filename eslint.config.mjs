// ESLint with typescript-eslint's type-aware rules (recommendedTypeChecked): they
// read the TypeScript program, so they catch floating and misused promises, which
// matter in a code base of streams, workers and signal handlers. Why ESLint and
// not Biome: README.md, "Lint and format".
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'build/**', 'reports/**', '.stryker-tmp/**', 'src/rpc/generated/**', 'clients/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's test()/describe() return promises the runner itself awaits and reports.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }],
        },
      ],
      // `_`-prefixed names are deliberately unused (a callback's position, a destructured rest).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `async` without `await` is deliberate here: it turns a synchronous throw into a rejection and implements async interfaces.
      '@typescript-eslint/require-await': 'off',
      // Flags `let x = init` kept for a try/catch or a loop that may not assign; the initial value documents the fallback.
      'no-useless-assignment': 'off',
    },
  },
  {
    // Process concerns stay at the edge (src/cli/): libraries take an AbortSignal, a logger and values, not the process.
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        ...['on', 'once', 'addListener', 'exit', 'exitCode'].map((property) => ({
          object: 'process',
          property,
          message: "signals and exit statuses are the CLI's (src/cli/signals.ts, exit-codes.ts): take an AbortSignal",
        })),
        { object: 'process', property: 'stderr', message: 'libraries log (src/log.ts) or take a warn callback; the CLI prints' },
        { object: 'process', property: 'env', message: 'the CLI reads the environment and passes the values in' },
      ],
    },
  },
  {
    // Tests and benchmarks read JSON and proto-loader's dynamically typed gRPC clients, then assert the shape they expect.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
