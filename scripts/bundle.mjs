/**
 * Bundles the CLI into dist/bin/ (run by `npm run build` after tsc): the
 * command is dist/bin/thinship.js, with its worker threads next to it.
 *
 * Why: Node's ES module loader resolves and compiles each file on its own,
 * and thinship's CLI with its libraries (execa, grpc-js, protobufjs, pino,
 * fast-xml-parser, commander) is ~350 files: ~0.43 s of start-up before any
 * work on this machine, against ~0.15 s for one bundled file. That start-up
 * is most of a small incremental send (issue 5), and every `thinship`
 * command in a VM guest pays it several times over.
 *
 * What stays outside the bundle, loaded from node_modules as usual:
 * - grpc-health-check and @grpc/reflection find their .proto files through
 *   __dirname (they are loaded by `serve` only);
 * - zstd-napi, @napi-rs/blake-hash (BLAKE3, stream/digest.ts) and our own addon are native (.node) files, found at run time
 *   (src/stream/zstd.ts, src/device/native.ts; both look relative to the
 *   bundle's directory too).
 * dist/src/cli/main.js (plain tsc output) keeps working; tests import
 * dist/src modules directly and run the CLI from the bundle.
 */
import { build } from 'esbuild';
import { chmod } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

await build({
  absWorkingDir: root,
  entryPoints: [
    { in: 'dist/src/cli/main.js', out: 'thinship' },
    // Loaded by URL relative to the module that starts them: same directory as the bundle.
    { in: 'dist/src/sender/compress-worker.js', out: 'compress-worker' },
    { in: 'dist/src/receiver/decode-worker.js', out: 'decode-worker' },
  ],
  outdir: 'dist/bin',
  bundle: true,
  // Each command's code (and its libraries) in its own chunk, loaded when the command runs:
  // `thinship --version` does not compile gRPC.
  splitting: true,
  // Same directory as the entry: modules find workers, .proto and the addon relative to themselves.
  chunkNames: '[name]-[hash]',
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  logLevel: 'warning',
  external: ['grpc-health-check', '@grpc/reflection', 'zstd-napi', '@napi-rs/blake-hash', '*.node'],
  // CommonJS libraries inside an ES module bundle still call require().
  banner: { js: "import { createRequire as __thinshipCreateRequire } from 'node:module'; const require = __thinshipCreateRequire(import.meta.url);" },
});
await chmod(new URL('../dist/bin/thinship.js', import.meta.url), 0o755);
