/**
 * Usage errors of the built CLI: one line naming the problem and a hint to the
 * command's --help, exit 2; never the whole help text, never a stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers/cli.js';

const lines = (s: string) => s.trim().split('\n');

for (const [args, first, hint] of [
  [['send', 'vg0/snap1', '--bogus'], "thinship: error: unknown option '--bogus'", "(run 'thinship send --help' for usage)"],
  [['bogus'], "thinship: error: unknown command 'bogus'", "(run 'thinship --help' for usage)"],
  [['plan'], "thinship: error: missing required argument 'names'", "(run 'thinship plan --help' for usage)"],
  [['certs'], "thinship: error: required option '--out <dir>' not specified", "(run 'thinship certs --help' for usage)"],
  // a USAGE error of thinship's own (thrown by the command), not commander's
  [['send', 'vg0/snap1', '--target', 'vg1/x'], 'thinship: --target and --transfer-id need --to HOST:PORT', "(run 'thinship send --help' for usage)"],
  [
    ['send', 'vg0/snap1', '--checksum', 'md5'],
    'thinship: --checksum must be blake3 or sha256, not "md5" (a stream without checksums: --no-extensions, pipe mode only)',
    "(run 'thinship send --help' for usage)",
  ],
  [
    ['send', 'vg0/snap1', '--no-extensions', '--checksum', 'sha256'],
    'thinship: --checksum needs the extensions (format 1.1, not --no-extensions): a plain LINBIT stream carries no checksums',
    "(run 'thinship send --help' for usage)",
  ],
  [['plan', '1', '2', '3'], 'thinship: give one snapshot for a full send, or two (base first) for an incremental', "(run 'thinship plan --help' for usage)"],
  // a command of a group: the hint names both words
  [['sender', 'serve'], "thinship: error: required option '--listen <host:port>' not specified", "(run 'thinship sender serve --help' for usage)"],
  [['transfer', 'list'], 'thinship: transfer needs either --to RECEIVER:PORT or --via SENDER:PORT', "(run 'thinship transfer --help' for usage)"],
  [
    ['send', 'vg0/snap1', '--request-id', 'r1'],
    'thinship: --request-id and --receiver-server-name need --via HOST:PORT',
    "(run 'thinship send --help' for usage)",
  ],
] as const) {
  test(`usage error: thinship ${args.join(' ')} -> one line and a hint, exit 2`, async () => {
    const r = await runCli([...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.deepEqual(lines(r.stderr), [first, hint]);
    assert.equal(r.stdout, '');
  });
}

test('THINSHIP_LOG=bogus is a usage error naming the allowed levels, not a stack trace', async () => {
  const r = await runCli(['plan', '1'], { env: { ...process.env, THINSHIP_LOG: 'bogus' } });
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(lines(r.stderr), ['thinship: THINSHIP_LOG="bogus" is not a log level (use one of: fatal, error, warn, info, debug, trace, silent)']);
});

test('THINSHIP_LOG with a real level still works; --help is not an error', async () => {
  const v = await runCli(['--version'], { env: { ...process.env, THINSHIP_LOG: 'debug' } });
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), '0.1.0');
  const h = await runCli(['send', '--help']);
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /Usage: thinship send/);
});
