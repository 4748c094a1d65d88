/**
 * What pipe-mode `thinship recv` guarantees for file targets (issue 13),
 * with the real CLI in separate processes and real files: a target is always
 * one complete received snapshot, compared byte for byte with the snapshot it
 * must equal. Streams come from the offline demo pool (snapshot 1 = base,
 * snapshot 2 = its successor).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, truncateSync, existsSync, readdirSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { cliPath, offlinePoolArgs, q, runCli, sh, startCli } from '../helpers/cli.js';
import { expectedImage } from '../helpers/offline-image.js';
import { waitFor } from '../service/helpers.js';

let dir: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let full1: Buffer;
let full2: Buffer;
let inc12: Buffer;

const node = process.execPath;
const offline = () => offlinePoolArgs(pool);

async function makeStream(ids: number[]): Promise<Buffer> {
  const f = join(dir, `stream-${ids.join('-')}.bin`);
  const r = await sh(`${q(node)} ${q(cliPath)} send ${offline().map(q).join(' ')} ${ids.join(' ')} > ${q(f)}`);
  assert.equal(r.code, 0, r.stderr);
  return readFileSync(f);
}

/** `thinship recv TARGET [flags] < bytes`. */
async function recvBytes(
  target: string,
  bytes: Buffer,
  flags: string[] = [],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; stderr: string }> {
  const s = join(dir, `in-${process.hrtime.bigint()}.bin`);
  writeFileSync(s, bytes);
  const r = await sh(`${q(node)} ${q(cliPath)} recv ${flags.map(q).join(' ')} ${q(target)} < ${q(s)}`, env);
  rmSync(s);
  return r;
}

function assertImage(path: string, expected: Buffer, what: string) {
  const actual = readFileSync(path);
  assert.equal(actual.length, expected.length, `${what}: size`);
  if (!actual.equals(expected)) {
    for (let off = 0; off < expected.length; off += pool.blockBytes) {
      if (!actual.subarray(off, off + pool.blockBytes).equals(expected.subarray(off, off + pool.blockBytes)))
        assert.fail(`${what}: first difference in block ${off / pool.blockBytes} (offset ${off})`);
    }
  }
}

function leftovers(target: string): string[] {
  return readdirSync(dirname(target)).filter((n) => n.startsWith(`.${basename(target)}.thinship-`) && !n.endsWith('-record'));
}

async function show(
  target: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ record: { record: { sourceId: string; baseId: string; digest: string }; store: string } | null; diverged: boolean; staged: unknown[] }> {
  const r = await runCli(['target', 'show', target, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** A target holding snapshot 1, received by pipe mode. */
async function targetWithSnap1(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const t = join(dir, name);
  rmSync(t, { force: true });
  const r = await recvBytes(t, full1, [], env);
  assert.equal(r.code, 0, r.stderr);
  assertImage(t, img1, `${name} after the full stream`);
  return t;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-guarantees-'));
  pool = await createDemoPool(join(dir, 'pool'));
  img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  img2 = expectedImage(pool.metadataPath, pool.dataPath, pool.snapDevId, pool.volumeSizeBytes);
  full1 = await makeStream([pool.baseDevId]);
  full2 = await makeStream([pool.snapDevId]);
  inc12 = await makeStream([pool.baseDevId, pool.snapDevId]);
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

for (const store of ['xattr', 'sidecar'] as const) {
  const env = store === 'sidecar' ? { ...process.env, THINSHIP_TARGET_RECORD: 'sidecar' } : process.env;
  test(`record (${store}): a full stream records what the target holds; the incremental from it applies and moves the record; target show says so`, async () => {
    const t = await targetWithSnap1(`rec-${store}.img`, env);
    let s = await show(t, env);
    assert.equal(s.record?.store, store);
    assert.equal(s.record?.record.baseId, '', 'a full stream');
    const snap1 = s.record.record.sourceId;
    assert.ok(snap1.length > 0);
    assert.match(s.record.record.digest, /^[0-9a-f]{64}$/);
    assert.equal(s.diverged, false);
    assert.deepEqual(s.staged, []);
    const r = await recvBytes(t, inc12, [], env);
    assert.equal(r.code, 0, r.stderr);
    assertImage(t, img2, 'after the incremental');
    s = await show(t, env);
    assert.equal(s.record?.record.baseId, snap1);
    assert.notEqual(s.record?.record.sourceId, snap1);
    assert.equal(s.diverged, false);
    assert.deepEqual(leftovers(t), [], 'no staging or journal left');
    const human = await runCli(['target', 'show', t], { env });
    assert.match(human.stdout, new RegExp(`holds: ${s.record.record.sourceId}, received as an increment from ${snap1}`));
  });

  test(`wrong base (${store}): an incremental whose base the target does not hold is refused (exit 14), target unchanged`, async () => {
    const t = join(dir, `wrong-${store}.img`);
    rmSync(t, { force: true });
    let r = await recvBytes(t, full2, [], env);
    assert.equal(r.code, 0, r.stderr);
    r = await recvBytes(t, inc12, [], env);
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /holds .* but this incremental stream applies to base/);
    assertImage(t, img2, 'untouched');
    // --force does not make a wrong base right.
    r = await recvBytes(t, inc12, ['--force'], env);
    assert.equal(r.code, 14, r.stderr);
    assertImage(t, img2, 'untouched after --force');
  });
}

test('no record: an incremental that names its base is refused onto a blank file (exit 14) unless --force', async () => {
  const t = join(dir, 'blank.img');
  writeFileSync(t, '');
  truncateSync(t, pool.volumeSizeBytes);
  let r = await recvBytes(t, inc12);
  assert.equal(r.code, 14, r.stderr);
  assert.match(r.stderr, /has no thinship record/);
  assertImage(t, Buffer.alloc(pool.volumeSizeBytes), 'still blank');
  // A copy of snapshot 1 made by hand (no record): --force takes the base on trust.
  writeFileSync(t, img1);
  r = await recvBytes(t, inc12, ['--force']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /no record; base .* taken on trust/);
  assertImage(t, img2, 'forced onto the hand-made base');
});

test('divergence: a target written since its last commit is refused with DIVERGED (exit 14); --force applies over it and says so', async () => {
  const t = await targetWithSnap1('diverged.img');
  // Write inside a block the increment changes, so that the forced result must equal snapshot 2 exactly.
  let off = 0;
  while (img1.subarray(off, off + pool.blockBytes).equals(img2.subarray(off, off + pool.blockBytes))) off += pool.blockBytes;
  const fd = openSync(t, 'r+');
  writeSync(fd, Buffer.from('written by someone else'), 0, 23, off + 100);
  closeSync(fd);
  const before = readFileSync(t);
  assert.equal((await show(t)).diverged, true);
  let r = await recvBytes(t, inc12);
  assert.equal(r.code, 14, r.stderr);
  assert.match(r.stderr, /was written since it received .*modified at/);
  assert.ok(readFileSync(t).equals(before), 'nothing written');
  r = await recvBytes(t, inc12, ['--force']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /--force: target .* had diverged/);
  assertImage(t, img2, 'forced');
  assert.equal((await show(t)).diverged, false, 'the forced commit is the new record');
});

test('sizes: an existing target smaller than the volume is refused (exit 11) unless --grow; a missing file is created', async () => {
  const t = join(dir, 'small.img');
  writeFileSync(t, Buffer.alloc(1024 * 1024, 7));
  let r = await recvBytes(t, full1);
  assert.equal(r.code, 11, r.stderr);
  assert.equal(statSync(t).size, 1024 * 1024);
  assert.ok(readFileSync(t).equals(Buffer.alloc(1024 * 1024, 7)), 'untouched');
  r = await recvBytes(t, full1, ['--grow']);
  assert.equal(r.code, 0, r.stderr);
  assertImage(t, img1, 'grown');
  const missing = join(dir, 'created.img');
  r = await recvBytes(missing, full1);
  assert.equal(r.code, 0, r.stderr);
  assertImage(missing, img1, 'created');
});

test('truncated streams at many points: the target is exactly its previous snapshot, nothing left beside it', async () => {
  const t = await targetWithSnap1('truncated.img');
  for (const [what, stream, previous] of [
    ['incremental', inc12, img1],
    ['full', full2, img1],
  ] as const) {
    for (const frac of [0.02, 0.2, 0.5, 0.8, 0.97]) {
      const cut = Math.floor(stream.length * frac);
      const r = await recvBytes(t, stream.subarray(0, cut));
      assert.equal(r.code, 10, `${what} cut at ${cut}: ${r.stderr}`);
      assert.match(r.stderr, /rolled back, the target holds what it held before|nothing was applied/);
      assertImage(t, previous, `${what} cut at ${cut} of ${stream.length}`);
      assert.deepEqual(leftovers(t), [], `${what} cut at ${cut}: leftovers`);
      assert.equal((await show(t)).diverged, false, `${what} cut at ${cut}: a rollback leaves the record valid`);
    }
  }
  const r = await recvBytes(t, inc12);
  assert.equal(r.code, 0, r.stderr);
  assertImage(t, img2, 'the incremental still applies after the rollbacks');
});

/** Bytes a staging file or journal beside the target holds (allocated: a staging file is created sparse at the volume size). */
function stagedBytes(t: string): number {
  let n = 0;
  for (const f of leftovers(t)) {
    try {
      n += statSync(join(dirname(t), f)).blocks * 512;
    } catch {
      /* removed meanwhile */
    }
  }
  return n;
}

/**
 * Starts `recv` with the whole stream but its last byte on a pipe that stays
 * open (so it applies every record and then waits for the end), waits until
 * its staging file or journal holds `atBytes`, and SIGKILLs it: the larger
 * atBytes, the later in the apply the kill.
 */
async function killMidApply(t: string, stream: Buffer, atBytes: number): Promise<void> {
  const { child, result } = startCli(['recv', t], { stdin: 'pipe' });
  try {
    child.stdin!.on('error', () => undefined);
    child.stdin!.write(stream.subarray(0, stream.length - 1));
    await waitFor(() => stagedBytes(t) >= atBytes, `recv staging ${atBytes} bytes for ${t}`, 60_000);
  } finally {
    child.kill('SIGKILL');
  }
  const r = await result;
  assert.equal(r.signal, 'SIGKILL', r.stderr);
}

test('SIGKILL of recv mid-apply at many points, then the next recv: the target is exactly the previous snapshot, or the new one after a complete stream', async () => {
  for (const [what, stream] of [
    ['incremental (undo journal)', inc12],
    ['full (staging file)', full2],
  ] as const) {
    const t = await targetWithSnap1(`killed-${what.split(' ')[0]}.img`);
    // The records' data is most of the stream, and what the stage holds grows to about as much.
    for (const frac of [0.05, 0.25, 0.5, 0.75, 0.9]) {
      await killMidApply(t, stream, Math.floor(stream.length * frac * 0.9));
      assert.ok(leftovers(t).length > 0, 'the killed apply left its staging or journal');
      // The next recv (here of a stream cut short, which fails) first rolls back what the killed one left.
      const r = await recvBytes(t, stream.subarray(0, 100));
      assert.match(r.stderr, /an earlier apply was interrupted: (rolled back from its undo journal|its staging file .* was removed)/, r.stderr);
      assertImage(t, img1, `${what}, killed at ${frac}`);
      assert.deepEqual(leftovers(t), []);
      assert.equal((await show(t)).diverged, false);
    }
    await killMidApply(t, stream, Math.floor(stream.length * 0.5));
    const r = await recvBytes(t, stream);
    assert.equal(r.code, 0, r.stderr);
    assertImage(t, img2, `${what}: a complete stream after a kill`);
  }
});

test('a plain LINBIT stream (no identity) is applied as thin_recv would, with a warning; the target then has no record', async () => {
  const t = await targetWithSnap1('plain.img');
  const plain = join(dir, 'plain-inc.bin');
  const r0 = await sh(`${q(node)} ${q(cliPath)} send ${offline().map(q).join(' ')} --no-extensions ${pool.baseDevId} ${pool.snapDevId} > ${q(plain)}`);
  assert.equal(r0.code, 0, r0.stderr);
  const r = await recvBytes(t, readFileSync(plain));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: .*plain LINBIT stream.*nothing could be checked/);
  assertImage(t, img2, 'plain incremental');
  assert.equal((await show(t)).record, null);
  assert.ok(!existsSync(join(dir, '.plain.img.thinship-record')));
});
