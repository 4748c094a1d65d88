/**
 * What pipe-mode `thinship recv` guarantees for raw block-device targets
 * (issue 13), on real loop devices, with the real CLI in separate processes:
 * the record lives in --state-dir keyed by the device's identity (the loop's
 * backing file), every apply goes through an undo journal there, and the
 * device always reads back byte for byte as one complete snapshot. Streams
 * come from the offline demo pool (snapshot 1 = base, 2 = its successor).
 * Needs root and losetup: skipped with a message otherwise.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync, statSync, existsSync, mkdirSync, copyFileSync } from 'node:fs';
import { spawn, execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { cliPath, runCli, startCli } from '../helpers/cli.js';
import { expectedImage } from '../helpers/offline-image.js';
import { waitFor, assertSameImage } from '../service/helpers.js';
import { attachLoop, detachLoop, loopUnavailable, newLoop, readDevice, writeDevice } from '../helpers/loop.js';

const skipReason = await loopUnavailable();
if (skipReason) console.log(`# recv-guarantees-device tests skipped: ${skipReason}`);

let dir: string;
let state: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let full1: Buffer;
let full2: Buffer;
let inc12: Buffer;
const loops: string[] = [];

const node = process.execPath;
const offline = () => ['--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath, '--volume-size', String(pool.volumeSizeBytes)];

function sh(script: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    c.on('close', (code) => resolve({ code, stderr }));
  });
}
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function makeStream(ids: number[]): Promise<Buffer> {
  const f = join(dir, `stream-${ids.join('-')}.bin`);
  const r = await sh(`${q(node)} ${q(cliPath)} send ${offline().map(q).join(' ')} ${ids.join(' ')} > ${q(f)}`);
  assert.equal(r.code, 0, r.stderr);
  return readFileSync(f);
}

/** `thinship recv --state-dir STATE [flags] DEVICE < bytes`. */
async function recvBytes(target: string, bytes: Buffer, flags: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const s = join(dir, `in-${process.hrtime.bigint()}.bin`);
  writeFileSync(s, bytes);
  const r = await sh(`${q(node)} ${q(cliPath)} recv --state-dir ${q(state)} ${flags.map(q).join(' ')} ${q(target)} < ${q(s)}`);
  rmSync(s);
  return r;
}

interface Shown {
  kind: string;
  identity: string;
  record: { record: { sourceId: string; baseId: string; digest: string }; store: string; file: string } | null;
  diverged: boolean;
  divergence: string[];
  staged: unknown[];
}

async function show(target: string): Promise<Shown> {
  const r = await runCli(['target', 'show', target, '--state-dir', state, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Shown;
}

function assertDevice(dev: string, expected: Buffer, what: string): void {
  assertSameImage(readDevice(dev, expected.length), expected, what, pool.blockBytes);
}

function journals(): string[] {
  const d = join(state, 'targets');
  return existsSync(d) ? readdirSync(d).filter((n) => n.includes('.undo-')) : [];
}

function journalBytes(): number {
  let n = 0;
  for (const f of journals()) {
    try {
      n += statSync(join(state, 'targets', f)).size;
    } catch {
      /* removed meanwhile */
    }
  }
  return n;
}

/** A blank loop device of the volume size (or `sizeBytes`) over a new backing file. */
async function blankDevice(name: string, sizeBytes = pool.volumeSizeBytes): Promise<string> {
  const dev = await newLoop(join(dir, `${name}.backing`), sizeBytes);
  loops.push(dev);
  return dev;
}

/** A loop device holding snapshot 1, received by pipe mode. */
async function deviceWithSnap1(name: string): Promise<string> {
  const dev = await blankDevice(name);
  const r = await recvBytes(dev, full1);
  assert.equal(r.code, 0, r.stderr);
  assertDevice(dev, img1, `${name} after the full stream`);
  return dev;
}

/** The first block the increment changes (a write there must be overwritten by a forced apply). */
function changedOffset(): number {
  let off = 0;
  while (img1.subarray(off, off + pool.blockBytes).equals(img2.subarray(off, off + pool.blockBytes))) off += pool.blockBytes;
  return off;
}

before(async () => {
  if (skipReason) return;
  dir = mkdtempSync(join(tmpdir(), 'thinship-devguar-'));
  state = join(dir, 'state');
  mkdirSync(state);
  pool = await createDemoPool(join(dir, 'pool'));
  img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  img2 = expectedImage(pool.metadataPath, pool.dataPath, pool.snapDevId, pool.volumeSizeBytes);
  full1 = await makeStream([pool.baseDevId]);
  full2 = await makeStream([pool.snapDevId]);
  inc12 = await makeStream([pool.baseDevId, pool.snapDevId]);
});
after(async () => {
  for (const l of loops) await detachLoop(l).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test(
  'device record: a full stream then the incremental from it; the record is in the state dir, keyed by the loop backing file, and survives a re-attach at another loop number',
  { skip: skipReason },
  async () => {
    const dev = await deviceWithSnap1('rec');
    let s = await show(dev);
    assert.equal(s.kind, 'block-device');
    assert.match(s.identity, /^loop backing-file dev=\d+ ino=\d+ offset=0$/);
    assert.equal(s.record?.store, 'state-dir');
    assert.ok(s.record.file.startsWith(join(state, 'targets', 'device-')), s.record.file);
    assert.equal(s.record.record.baseId, '');
    const snap1 = s.record.record.sourceId;
    assert.match(s.record.record.digest, /^[0-9a-f]{64}$/);
    assert.equal(s.diverged, false, s.divergence.join('; '));
    assert.deepEqual(s.staged, []);
    const r = await recvBytes(dev, inc12);
    assert.equal(r.code, 0, r.stderr);
    assertDevice(dev, img2, 'after the incremental');
    assert.deepEqual(journals(), [], 'the journal is deleted at commit');
    s = await show(dev);
    assert.equal(s.record?.record.baseId, snap1);
    assert.equal(s.diverged, false, s.divergence.join('; '));
    // The same backing file attached again (another loop device): the same target, same record.
    await detachLoop(dev);
    loops.splice(loops.indexOf(dev), 1);
    const again = await attachLoop(join(dir, 'rec.backing'));
    loops.push(again);
    const s2 = await show(again);
    assert.equal(s2.record?.record.sourceId, s.record?.record.sourceId);
    assert.equal(s2.diverged, false, `re-attached: ${s2.divergence.join('; ')}`);
    const human = await runCli(['target', 'show', again, '--state-dir', state]);
    assert.match(human.stdout, /\(block device\)/);
    assert.match(human.stdout, new RegExp(`holds: ${s2.record.record.sourceId}, received as an increment from ${snap1}`));
  },
);

test(
  'device wrong base: an incremental whose base the device does not hold is refused (exit 14) before any byte is written; no record: refused unless --force',
  { skip: skipReason },
  async () => {
    const dev = await blankDevice('wrong');
    let r = await recvBytes(dev, full2);
    assert.equal(r.code, 0, r.stderr);
    r = await recvBytes(dev, inc12);
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /holds .* but this incremental stream applies to base/);
    assertDevice(dev, img2, 'untouched');
    assert.deepEqual(journals(), [], 'refused before a journal was begun');
    assert.equal((await show(dev)).diverged, false, 'a refusal writes nothing (the I/O counters did not move)');
    // A blank device has no record: the incremental is refused; a hand-made base with --force is taken on trust.
    const blank = await blankDevice('norecord');
    r = await recvBytes(blank, inc12);
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /has no thinship record/);
    assertDevice(blank, Buffer.alloc(pool.volumeSizeBytes), 'still blank');
    writeDevice(blank, 0, img1);
    r = await recvBytes(blank, inc12, ['--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no record; base .* taken on trust/);
    assertDevice(blank, img2, 'forced onto the hand-made base');
  },
);

test(
  'device divergence: a write through the device (I/O counters) or to its backing file (mtime) is DIVERGED (exit 14); --force applies over it',
  { skip: skipReason },
  async () => {
    for (const how of ['device', 'backing file'] as const) {
      const name = `div-${how.replace(' ', '-')}`;
      const dev = await deviceWithSnap1(name);
      const off = changedOffset();
      if (how === 'device') writeDevice(dev, off, Buffer.alloc(512, 0x5a));
      else writeDevice(join(dir, `${name}.backing`), off, Buffer.alloc(512, 0x5a));
      const before = readDevice(dev, pool.volumeSizeBytes);
      const s = await show(dev);
      assert.equal(s.diverged, true, `${how}: seen as diverged`);
      assert.match(s.divergence.join('; '), how === 'device' ? /sectors were written to it since the commit/ : /backing file was modified/);
      let r = await recvBytes(dev, inc12);
      assert.equal(r.code, 14, r.stderr);
      assert.match(r.stderr, /was written since it received/);
      assert.ok(readDevice(dev, pool.volumeSizeBytes).equals(before), `${how}: nothing written`);
      r = await recvBytes(dev, inc12, ['--force']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /--force: target .* had diverged/);
      assertDevice(dev, img2, `${how}: forced`);
      assert.equal((await show(dev)).diverged, false, `${how}: the forced commit is the new record`);
    }
  },
);

test('device sizes: a device smaller than the volume is refused (exit 11); --grow cannot grow a block device and says so', { skip: skipReason }, async () => {
  const dev = await blankDevice('small', 1024 * 1024);
  writeDevice(dev, 0, Buffer.alloc(1024 * 1024, 7));
  let r = await recvBytes(dev, full1);
  assert.equal(r.code, 11, r.stderr);
  assert.match(r.stderr, /has only 1048576 bytes \(a block device\)/);
  r = await recvBytes(dev, full1, ['--grow']);
  assert.equal(r.code, 11, r.stderr);
  assert.match(r.stderr, /--grow cannot grow a block device/);
  assert.ok(readDevice(dev, 1024 * 1024).equals(Buffer.alloc(1024 * 1024, 7)), 'untouched');
  assert.deepEqual(journals(), []);
});

test(
  'device truncated streams at many points: the device is exactly its previous snapshot, the journal gone, the record still valid',
  { skip: skipReason },
  async () => {
    const dev = await deviceWithSnap1('truncated');
    for (const [what, stream] of [
      ['incremental', inc12],
      ['full', full2],
    ] as const) {
      for (const frac of [0.05, 0.5, 0.95]) {
        const cut = Math.floor(stream.length * frac);
        const r = await recvBytes(dev, stream.subarray(0, cut));
        assert.equal(r.code, 10, `${what} cut at ${cut}: ${r.stderr}`);
        assert.match(r.stderr, /rolled back, the target holds what it held before|nothing was applied/);
        assertDevice(dev, img1, `${what} cut at ${cut} of ${stream.length}`);
        assert.deepEqual(journals(), [], `${what} cut at ${cut}: journal left`);
        assert.equal((await show(dev)).diverged, false, `${what} cut at ${cut}: a rollback leaves the record valid`);
      }
    }
    const r = await recvBytes(dev, inc12);
    assert.equal(r.code, 0, r.stderr);
    assertDevice(dev, img2, 'the incremental still applies after the rollbacks');
  },
);

/**
 * Starts `recv` with all of the stream but its last byte on a pipe that stays
 * open, waits until its journal holds `atBytes`, and SIGKILLs it.
 */
async function killMidApply(dev: string, stream: Buffer, atBytes: number): Promise<void> {
  const { child, result } = startCli(['recv', '--state-dir', state, dev], { stdin: 'pipe' });
  try {
    child.stdin!.on('error', () => undefined);
    child.stdin!.write(stream.subarray(0, stream.length - 1));
    await waitFor(() => journalBytes() >= atBytes, `recv journaling ${atBytes} bytes for ${dev}`, 60_000);
  } finally {
    child.kill('SIGKILL');
  }
  const r = await result;
  assert.equal(r.signal, 'SIGKILL', r.stderr);
}

test(
  'SIGKILL of recv mid-apply onto a device, then the next recv: it rolls back from the journal, the device is exactly the previous snapshot; a complete stream then applies',
  { skip: skipReason },
  async () => {
    for (const [what, stream] of [
      ['incremental', inc12],
      ['full', full2],
    ] as const) {
      const dev = await deviceWithSnap1(`killed-${what}`);
      for (const frac of [0.1, 0.5, 0.9]) {
        await killMidApply(dev, stream, Math.floor(stream.length * frac * 0.8));
        assert.equal(journals().length, 1, 'the killed apply left its journal');
        if (frac === 0.9)
          assert.ok(!readDevice(dev, pool.volumeSizeBytes).equals(img1), 'the killed apply had written the device (so the rollback below is what restores it)');
        assert.equal((await show(dev)).staged.length, 1, 'target show lists it');
        const r = await recvBytes(dev, stream.subarray(0, 100));
        assert.match(r.stderr, /an earlier apply was interrupted: rolled back from its undo journal/, r.stderr);
        assertDevice(dev, img1, `${what}, killed at ${frac}`);
        assert.deepEqual(journals(), []);
        assert.equal((await show(dev)).diverged, false, `${what}, killed at ${frac}: the rollback re-recorded the device`);
      }
      await killMidApply(dev, stream, Math.floor(stream.length * 0.5));
      const r = await recvBytes(dev, stream);
      assert.equal(r.code, 0, r.stderr);
      assertDevice(dev, img2, `${what}: a complete stream after a kill`);
    }
  },
);

test(
  'device record garbage: a state-dir record that is not JSON, or of another device, is a clear error naming the file (exit 7), nothing written',
  { skip: skipReason },
  async () => {
    const dev = await deviceWithSnap1('garbage');
    const file = (await show(dev)).record!.file;
    const good = readFileSync(file, 'utf8');
    for (const [what, bytes] of [
      ['not JSON', '{"format":1,"rec'],
      ['another identity', good.replace(/"identity":"[^"]*"/, '"identity":"loop backing-file dev=1 ino=2 offset=0"')],
    ] as const) {
      writeFileSync(file, bytes);
      const r = await recvBytes(dev, inc12);
      assert.equal(r.code, 7, `${what}: ${r.stderr}`);
      assert.ok(r.stderr.includes(file), `${what}: names ${file}: ${r.stderr}`);
      assertDevice(dev, img1, `${what}: untouched`);
      const shown = await runCli(['target', 'show', dev, '--state-dir', state]);
      assert.equal(shown.code, 7, shown.stderr);
      assert.ok(shown.stderr.includes(file));
    }
    writeFileSync(file, good);
    const r = await recvBytes(dev, inc12);
    assert.equal(r.code, 0, r.stderr);
    assertDevice(dev, img2, 'the record restored: the incremental applies');
  },
);

test(
  'device journal on a full state directory: the apply fails naming the journal (exit 12), the device is rolled back to its previous snapshot exactly',
  { skip: skipReason },
  async () => {
    const dev = await deviceWithSnap1('enospc');
    // The same record, in a state directory on a 2 MiB tmpfs: far too small for the old bytes a full stream replaces.
    const tiny = join(dir, 'tiny-state');
    mkdirSync(join(tiny), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', tiny]);
    try {
      mkdirSync(join(tiny, 'targets'));
      const rec = (await show(dev)).record!.file;
      copyFileSync(rec, join(tiny, 'targets', basename(rec)));
      const s = join(dir, 'enospc-in.bin');
      writeFileSync(s, full2);
      const r = await sh(`${q(node)} ${q(cliPath)} recv --state-dir ${q(tiny)} ${q(dev)} < ${q(s)}`);
      assert.equal(r.code, 12, r.stderr);
      assert.match(r.stderr, /ENOSPC|no space left/i);
      assert.ok(r.stderr.includes(`undo journal ${join(tiny, 'targets')}`), `names the journal: ${r.stderr}`);
      assert.match(r.stderr, /rolled back, the target holds what it held before/);
      assertDevice(dev, img1, 'rolled back after the state directory filled up');
      assert.deepEqual(
        readdirSync(join(tiny, 'targets')).filter((n) => n.includes('.undo-')),
        [],
        'the journal is gone',
      );
      const after = await runCli(['target', 'show', dev, '--state-dir', tiny, '--json']);
      assert.equal(after.code, 0, after.stderr);
      assert.equal((JSON.parse(after.stdout) as Shown).diverged, false, 'the record was taken again after the rollback');
    } finally {
      execFileSync('umount', [tiny]);
    }
  },
);
