/**
 * Process concerns at the edge: a stop signal becomes an AbortSignal only in
 * cli/signals.ts (exit status 128 + n, handlers gone afterwards); an errno is
 * mapped where its operation is known, never guessed; exec/ reads execa's own
 * result fields (spawn errno, cancel, signal, max buffer).
 * Runs from source too: `node --import tsx --test test/unit/process-edge.test.ts`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withStopSignals, InterruptedError } from '../../src/cli/signals.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { ThinshipError, abortError, asThinshipError, isAbortOf } from '../../src/errors.js';
import { runTool } from '../../src/exec/run.js';
import { BlockReader } from '../../src/thin/metadata/block-reader.js';

const WAIT_MS = 10_000;

/** Resolves when `signal` is aborted; bounded (a ref'd timer: a pending signal handler does not keep the loop alive). */
function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not aborted within ${WAIT_MS} ms`)), WAIT_MS);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

test('withStopSignals: SIGHUP aborts the work with an InterruptedError (exit 129) and the handlers are removed afterwards', async () => {
  const before = process.listenerCount('SIGHUP');
  const err = await withStopSignals(async (signal) => {
    assert.equal(process.listenerCount('SIGHUP'), before + 1, 'a handler while the work runs');
    process.kill(process.pid, 'SIGHUP');
    await aborted(signal);
    throw new Error('the tool this work ran was cancelled'); // what a cancelled tool throws in its own words
  }).then(
    () => assert.fail('should have thrown'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InterruptedError, String(err));
  assert.equal(err.code, 'ABORTED');
  assert.equal(err.message, 'interrupted by SIGHUP');
  assert.equal(exitCodeOf(err), 129);
  assert.match(String((err.cause as Error).message), /was cancelled/, 'the failure it stopped is kept as the cause');
  assert.equal(process.listenerCount('SIGHUP'), before, 'no handler left behind');
});

test('withStopSignals: an error made from the signal by a library (abortError with context) is kept, with its exit status', async () => {
  const err = await withStopSignals(
    async (signal) => {
      process.kill(process.pid, 'SIGTERM');
      await aborted(signal);
      throw abortError(signal, 'the metadata snapshot was released');
    },
    { signals: ['SIGTERM'] },
  ).then(
    () => assert.fail('should have thrown'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ThinshipError);
  assert.equal(err.message, 'interrupted by SIGTERM; the metadata snapshot was released');
  assert.equal(exitCodeOf(err), 143);
});

test('withStopSignals: work that finishes untouched returns its value; errors without a signal pass through unchanged', async () => {
  assert.equal(await withStopSignals(async () => 42), 42);
  const boom = new ThinshipError('BAD_STREAM', 'boom');
  await assert.rejects(
    withStopSignals(async () => {
      throw boom;
    }),
    (e: unknown) => e === boom,
  );
});

test('abortError and isAbortOf: a plain AbortController is ABORTED (exit 130); the reason and errors made from it are recognised', () => {
  const ac = new AbortController();
  ac.abort();
  const e = abortError(ac.signal, 'nothing was written');
  assert.equal(e.code, 'ABORTED');
  assert.equal(e.message, 'cancelled; nothing was written');
  assert.equal(exitCodeOf(e), 130);
  const cli = new AbortController();
  const reason = new InterruptedError('SIGINT');
  cli.abort(reason);
  assert.equal(abortError(cli.signal), reason);
  assert.ok(isAbortOf(reason, cli.signal));
  assert.ok(isAbortOf(abortError(cli.signal, 'x'), cli.signal));
  assert.ok(!isAbortOf(new Error('other'), cli.signal));
});

test('an errno nobody mapped is IO_ERROR naming it, not a guessed NOT_FOUND', () => {
  const e = asThinshipError(Object.assign(new Error("ENOENT: no such file or directory, open '/x/state.json'"), { code: 'ENOENT', syscall: 'open' }));
  assert.equal(e.code, 'IO_ERROR');
  assert.equal(e.details.errno, 'ENOENT');
  assert.equal(asThinshipError(Object.assign(new Error('again'), { code: 'EAGAIN' })).retryable, true);
  assert.equal(asThinshipError(new Error('plain')).code, 'INTERNAL');
});

test('opening pool metadata that does not exist is NOT_FOUND naming the path (the operation is known)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'thinship-edge-'));
  try {
    const path = join(dir, 'no-such-metadata');
    await assert.rejects(
      BlockReader.open(path),
      (e: unknown) => e instanceof ThinshipError && e.code === 'NOT_FOUND' && e.message.includes(path) && e.details.errno === 'ENOENT',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("exec: execa's result fields decide: a cancelled tool is ABORTED, a tool killed by a signal TOOL_KILLED naming it", async () => {
  const ac = new AbortController();
  const run = runTool('sh', ['-c', 'echo started; exec sleep 30'], { signal: ac.signal });
  ac.abort();
  await assert.rejects(run, (e: unknown) => e instanceof ThinshipError && e.code === 'ABORTED' && /sh was cancelled/.test(e.message));
  await assert.rejects(
    runTool('sh', ['-c', 'kill -KILL $$']),
    (e: unknown) => e instanceof ThinshipError && e.code === 'TOOL_KILLED' && /killed by SIGKILL/.test(e.message) && e.retryable,
  );
  await assert.rejects(
    runTool('sh', ['-c', 'echo oops >&2; exit 3']),
    (e: unknown) => e instanceof ThinshipError && e.code === 'TOOL_FAILED' && /exited with status 3: oops/.test(e.message),
  );
});
