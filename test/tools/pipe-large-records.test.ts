/**
 * DATA records of hundreds of MiB, as LINBIT's thin_send writes them (one record
 * per mapped run, no size cap), through the real `thinship recv` reading a pipe
 * into a sparse file: applied byte-exact (compared by sha256 of the generated
 * pattern, never a second copy in memory), in bounded memory (the recv process's
 * peak RSS, exact from getrusage of its parent), and refused with the byte
 * offset when cut short or when it does not fit the target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { cliPath } from '../helpers/cli.js';
import { hdr, stats } from '../helpers/linbit-bytes.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BEGIN = hdr(0, 0, 2);
const end = (nChunks: number, nData: number) => Buffer.concat([hdr(0, 24, 3), stats(nChunks, nData, 0)]);

/**
 * Runs `thinship recv target` as a child of python3, which reports the child's
 * exact peak RSS (getrusage RUSAGE_CHILDREN, KiB) on the last stderr line.
 */
const RUSAGE_WRAPPER =
  'import resource, subprocess, sys\nrc = subprocess.call(sys.argv[1:])\nsys.stderr.write("\\nmaxrss_kib=%d\\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\nsys.exit(rc)';

async function recvFrom(target: string, feed: (stdin: Writable) => Promise<void>): Promise<{ code: number | null; stderr: string; maxRssMiB: number }> {
  const child = spawn('python3', ['-c', RUSAGE_WRAPPER, process.execPath, cliPath, 'recv', target], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  // A receiver that refuses the stream closes the pipe early: the writer then stops (EPIPE is expected, not a failure).
  child.stdin.on('error', () => undefined);
  try {
    await feed(child.stdin);
  } finally {
    // Whatever happened in the feed, the receiver sees the end of its input (and so cannot hang this test).
    child.stdin.end();
  }
  const code = await closed;
  const m = /maxrss_kib=(\d+)\s*$/.exec(stderr);
  assert.ok(m, `no maxrss line in: ${stderr}`);
  return { code, stderr: stderr.slice(0, m.index).trim(), maxRssMiB: Number(m[1]) / 1024 };
}

/** Writes a buffer, waiting for the pipe to drain (or to close, when the reader is gone). */
async function put(w: Writable, b: Buffer): Promise<boolean> {
  if (w.destroyed || w.writableEnded) return false;
  if (w.write(b)) return true;
  await new Promise<void>((resolve) => {
    const done = () => {
      w.off('drain', done);
      w.off('close', done);
      w.off('error', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
    w.on('error', done);
  });
  return !w.destroyed;
}

/**
 * The payload pattern, 1 MiB at a time: a fixed pseudo-random block with the
 * block number stamped into it, so that every MiB differs (a misplaced or
 * repeated piece changes the hash). Each block is a fresh Buffer (a pipe write
 * keeps its Buffer until flushed).
 */
const BASE_BLOCK = (() => {
  const b = Buffer.allocUnsafe(MiB);
  let x = 0x9e3779b9;
  for (let i = 0; i < MiB; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
})();
function patternBlock(i: number, bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  BASE_BLOCK.copy(b, 0, 0, bytes);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(~i >>> 0, bytes - 4);
  return b;
}

/** Feeds BEGIN, one DATA record of `recordBytes` at `offset` (only `sendBytes` of its payload), and END if complete; hashes what it sent. */
async function feedRecord(w: Writable, offset: number, recordBytes: number, sendBytes: number, hash: Hash): Promise<void> {
  if (!(await put(w, Buffer.concat([BEGIN, hdr(offset, recordBytes, 0)])))) return;
  for (let done = 0, i = 0; done < sendBytes; i++) {
    const b = patternBlock(i, Math.min(MiB, sendBytes - done));
    hash.update(b);
    done += b.length;
    if (!(await put(w, b))) return;
  }
  if (sendBytes === recordBytes) await put(w, end(3, 1));
  w.end();
}

/** sha256 of [offset, offset + length) of a file, read 4 MiB at a time. */
async function hashRange(path: string, offset: number, length: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (let done = 0; done < length;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - done), offset + done);
      assert.ok(bytesRead > 0, `short read at ${offset + done}`);
      h.update(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}

for (const [recordBytes, label] of [
  [128 * MiB, '128 MiB'],
  [GiB, '1 GiB'],
] as const) {
  test(`one ${label} DATA record (thin_send style) through a pipe into a sparse file: byte-exact, recv peak RSS < 150 MiB`, { timeout: 300_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'thinship-bigrec-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const target = join(dir, 'target.img');
    const offset = 3 * MiB + 64 * 1024; // not a multiple of the piece size
    const sizeBytes = offset + recordBytes + 5 * MiB;
    writeFileSync(target, '');
    truncateSync(target, sizeBytes);
    const sent = createHash('sha256');
    const r = await recvFrom(target, (w) => feedRecord(w, offset, recordBytes, recordBytes, sent));
    t.diagnostic(`recv peak RSS ${r.maxRssMiB.toFixed(1)} MiB for a ${label} record`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /thinship recv: .*: 3 records \(1 data, 0 unmap\)/);
    assert.equal(statSync(target).size, sizeBytes, 'size unchanged');
    assert.equal(await hashRange(target, offset, recordBytes), sent.digest('hex'), 'content');
    assert.ok(r.maxRssMiB < 150, `recv peak RSS ${r.maxRssMiB.toFixed(1)} MiB (the record is ${label})`);
  });
}

test(
  'a 128 MiB DATA record cut short inside its payload: exit 10 naming the stream byte and volume offset, what was written said',
  { timeout: 120_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'thinship-bigrec-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const target = join(dir, 'target.img');
    writeFileSync(target, '');
    truncateSync(target, 256 * MiB);
    const r = await recvFrom(target, (w) => feedRecord(w, 2 * MiB, 128 * MiB, 100 * MiB + 12345, createHash('sha256')));
    assert.equal(r.code, 10, r.stderr);
    assert.match(
      r.stderr,
      /bad stream at byte 56 \(record 2, DATA payload, volume offset 2097152\): truncated payload: the stream ends at byte 104870001, after 104869945 of 134217728 bytes/,
    );
    // Pieces of 4 MiB were written as they came: 25 of them before the short one.
    assert.match(r.stderr, /applied before the error: 1 data records \(104857600 bytes written\)/);
  },
);

test('a 128 MiB DATA record past the end of a 64 MiB target (no size in the stream): refused before any of it is written', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'thinship-bigrec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const target = join(dir, 'small.img');
  writeFileSync(target, Buffer.alloc(64 * MiB, 7));
  const before = await hashRange(target, 0, 64 * MiB);
  const r = await recvFrom(target, (w) => feedRecord(w, 0, 128 * MiB, 128 * MiB, createHash('sha256')));
  assert.equal(r.code, 10, r.stderr);
  assert.match(
    r.stderr,
    /data record beyond the target \(record 2, volume offset 0, length 134217728\): target .* is 67108864 bytes; nothing was applied to the target/,
  );
  assert.equal(await hashRange(target, 0, 64 * MiB), before, 'target untouched');
  assert.equal(statSync(target).size, 64 * MiB);
});
