/**
 * Pipe mode end to end with the real CLI in separate processes: `thinship send`
 * from the offline demo pool | `thinship recv` into sparse files and loop
 * devices, directly and through `zstd -1 | socat` on loopback; full then
 * incremental; target compared byte for byte with the source snapshot.
 * Also every malformed-stream case of issue 3 §5, through the real recv.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, statSync, truncateSync, existsSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { cliPath, offlinePoolArgs, q, sh } from '../helpers/cli.js';
import { expectedImage } from '../helpers/offline-image.js';
import { GROUP_ENCODER_DATA_BYTES } from '../../src/stream/linbit/format.js';

let dir: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
const loops: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-pipe-'));
  pool = await createDemoPool(join(dir, 'pool'));
  img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  img2 = expectedImage(pool.metadataPath, pool.dataPath, pool.snapDevId, pool.volumeSizeBytes);
});
after(() => {
  for (const l of loops) {
    try {
      execFileSync('losetup', ['-d', l]);
    } catch {
      /* gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

const offline = () => offlinePoolArgs(pool);
const node = process.execPath;

const send = (ids: number[], extra = '') => `${q(node)} ${q(cliPath)} send ${offline().map(q).join(' ')} ${extra} ${ids.join(' ')}`;
// --state-dir: a block-device target's record and journal stay in the test's directory.
const recv = (target: string) => `${q(node)} ${q(cliPath)} recv --state-dir ${q(join(dir, 'state'))} ${q(target)}`;

function readTarget(path: string): Buffer {
  return readFileSync(path).subarray(0, pool.volumeSizeBytes);
}

function assertSameImage(actual: Buffer, expected: Buffer, what: string) {
  assert.equal(actual.length, expected.length, `${what}: size`);
  if (!actual.equals(expected)) {
    const blk = pool.blockBytes;
    for (let off = 0; off < expected.length; off += blk) {
      if (!actual.subarray(off, off + blk).equals(expected.subarray(off, off + blk)))
        assert.fail(`${what}: first difference in block ${off / blk} (offset ${off})`);
    }
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

test('send | recv onto a new sparse file: full, then incremental, byte-exact; discarded ranges read as zeros', async () => {
  const target = join(dir, 'plain.img');
  let r = await sh(`${send([pool.baseDevId])} | ${recv(target)}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /thinship recv: .*written/);
  assert.equal(statSync(target).size, pool.volumeSizeBytes, 'created at the volume size');
  assertSameImage(readTarget(target), img1, 'after full');
  r = await sh(`${send([pool.baseDevId, pool.snapDevId])} | ${recv(target)}`);
  assert.equal(r.code, 0, r.stderr);
  assertSameImage(readTarget(target), img2, 'after incremental');
  // the demo's discarded blocks 550..559 were data after the full send: now zeros, and a hole
  const blocks = statSync(target).blocks * 512;
  assert.ok(blocks < img2.length, 'sparse');
});

test('through zstd -1 | socat over loopback, as LINSTOR pipes thin_send', async () => {
  const target = join(dir, 'socat.img');
  for (const [ids, expected] of [
    [[pool.baseDevId], img1],
    [[pool.baseDevId, pool.snapDevId], img2],
  ] as const) {
    const port = await freePort();
    const receiver = sh(`socat -u TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr STDOUT | zstd -d | ${recv(target)}`);
    await new Promise((r) => setTimeout(r, 300));
    const sender = await sh(`${send([...ids])} | zstd -1 | socat -u STDIN TCP:127.0.0.1:${port},retry=20,interval=0.1`);
    const rr = await receiver;
    assert.equal(sender.code, 0, sender.stderr);
    assert.equal(rr.code, 0, rr.stderr);
    assertSameImage(readTarget(target), expected, `socat ${ids.join('->')}`);
  }
});

test('onto a loop device with 4096-byte sectors, pre-filled with garbage: full then incremental, byte-exact', async () => {
  const backing = join(dir, 'loop.img');
  writeFileSync(backing, Buffer.alloc(pool.volumeSizeBytes, 0xa5));
  const dev = execFileSync('losetup', ['-f', '--show', '--sector-size', '4096', backing], { encoding: 'utf8' }).trim();
  loops.push(dev);
  // A full stream replaces the target: the receiver zeroes what the source has unmapped (the garbage here).
  let r = await sh(`${send([pool.baseDevId])} | ${recv(dev)}`);
  assert.equal(r.code, 0, r.stderr);
  const read = () => readFileSync(dev).subarray(0, pool.volumeSizeBytes);
  assertSameImage(read(), img1, 'loop full');
  r = await sh(`${send([pool.baseDevId, pool.snapDevId])} | ${recv(dev)}`);
  assert.equal(r.code, 0, r.stderr);
  assertSameImage(read(), img2, 'loop incremental');
});

test('a stream for a larger volume is refused before anything is written', async () => {
  const small = join(dir, 'small.img');
  writeFileSync(small, Buffer.alloc(1024 * 1024, 7));
  const r = await sh(`${send([pool.baseDevId])} | ${recv(small)}`);
  assert.equal(r.code, 11, r.stderr);
  assert.match(r.stderr, /volume of 67108864 bytes but target .* has only 1048576 bytes; nothing was written/);
  assert.ok(readFileSync(small).equals(Buffer.alloc(1024 * 1024, 7)));
});

test('send refuses a terminal', async () => {
  // a terminal on stdout: script(1) gives the command a pseudo-terminal
  const tty = spawnSync('script', ['-qec', send([pool.baseDevId]), '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(tty.status, 2, tty.stdout);
  assert.match(tty.stdout, /refusing to write a binary stream to a terminal/);
});

test('empty input (a format 1.0 stream without records) is accepted as thin_recv does: "Empty input.", exit 0, target untouched, nothing created', async () => {
  const target = join(dir, 'empty.img');
  writeFileSync(target, Buffer.alloc(4096, 3));
  const mtimeMs = statSync(target).mtimeMs;
  let r = await sh(`${recv(target)} < /dev/null`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, 'Empty input.\n');
  assert.ok(readFileSync(target).equals(Buffer.alloc(4096, 3)));
  assert.equal(statSync(target).mtimeMs, mtimeMs, 'not even opened for writing');
  // What thinship send --format 1.0 (like thin_send 1.0) writes for identical snapshots: zero bytes.
  // Two devices with the same mappings (a snapshot of an unchanged origin); the same
  // device given twice is refused as a source (exit 4) before anything is written.
  const sameXml = join(dir, 'same.xml');
  const sameMeta = join(dir, 'same.tmeta');
  const dev = (id: number, tx: number) =>
    `  <device dev_id="${id}" mapped_blocks="2" transaction="${tx}" creation_time="${tx}" snap_time="${tx}">\n` +
    '    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>\n  </device>\n';
  writeFileSync(
    sameXml,
    `<superblock uuid="" time="1" transaction="1" version="2" data_block_size="${pool.blockBytes / 512}" nr_data_blocks="16">\n${dev(1, 0)}${dev(2, 1)}</superblock>\n`,
  );
  writeFileSync(sameMeta, Buffer.alloc(0));
  truncateSync(sameMeta, 8 * 1024 * 1024);
  execFileSync('thin_restore', ['-i', sameXml, '-o', sameMeta]);
  const missing = join(dir, 'never-created.img');
  const sendSame = `${q(node)} ${q(cliPath)} send --pool-metadata ${q(sameMeta)} --pool-data ${q(pool.dataPath)} --volume-size ${pool.volumeSizeBytes} --format 1.0 1 2`;
  r = await sh(`${sendSame} | ${recv(missing)}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^Empty input\.$/m);
  assert.ok(!existsSync(missing), 'a missing target file is not created for an empty stream');
});

test('optional records in a real stream: begin-info, one checksum group per 32 MiB / 1024 DATA records, the digest (thin_recv prints one line per optional record)', async () => {
  for (const flags of ['', '--max-op-bytes 64K']) {
    const bytes = await makeStream([pool.baseDevId], flags);
    const counts = new Map<number, number>();
    let dataBytes = 0;
    for (let at = 0; at < bytes.length;) {
      const length = Number(bytes.readBigUInt64BE(at + 16));
      const cmd = bytes.readUInt32BE(at + 24);
      at += 28 + (cmd === 0 || cmd >= 0x8000_0000 ? length : cmd === 3 ? 24 : 0);
      if (cmd === 0) dataBytes += length;
      counts.set(cmd, (counts.get(cmd) ?? 0) + 1);
    }
    const dataRecords = counts.get(0)!;
    const optional = [...counts].filter(([cmd]) => cmd >= 0x8000_0000).reduce((n, [, c]) => n + c, 0);
    const groups = Math.max(Math.ceil(dataBytes / GROUP_ENCODER_DATA_BYTES), Math.ceil(dataRecords / 1024));
    assert.ok(dataRecords > 30, `${flags}: ${dataRecords} DATA records`);
    assert.equal(counts.get(0x8054_5304), groups, `${flags}: checksum groups`);
    assert.equal(counts.get(0x8054_5302), undefined, `${flags}: no per-DATA checksum records`);
    assert.equal(optional, 2 + groups, `${flags}: begin-info + groups + digest`);
  }
});

test('format 1.0 and plain 1.1 (no extensions) streams are applied too (as thin_recv does: only the records)', async () => {
  for (const flags of ['--format 1.0', '--no-extensions']) {
    const target = join(dir, `fmt-${flags.replace(/\W/g, '')}.img`);
    writeFileSync(target, '');
    truncateSync(target, pool.volumeSizeBytes);
    const r = await sh(`${send([pool.baseDevId], flags)} | ${recv(target)}`);
    assert.equal(r.code, 0, `${flags}: ${r.stderr}`);
    assertSameImage(readTarget(target), img1, flags);
  }
});

// ---- malformed streams: non-zero exit, stream position and volume offset named, how much was applied
async function makeStream(ids: number[], extra = ''): Promise<Buffer> {
  const f = join(dir, `stream-${ids.join('-')}${extra.replace(/\W/g, '')}.bin`);
  if (!existsSync(f)) {
    const r = await sh(`${send(ids, extra)} > ${q(f)}`);
    assert.equal(r.code, 0, r.stderr);
  }
  return readFileSync(f);
}

async function recvBytes(bytes: Buffer, targetSize = pool.volumeSizeBytes): Promise<{ code: number | null; stderr: string; target: string }> {
  const s = join(dir, 'bad.bin');
  writeFileSync(s, bytes);
  const target = join(dir, 'bad-target.img');
  rmSync(target, { force: true });
  writeFileSync(target, '');
  truncateSync(target, targetSize);
  const r = await sh(`${recv(target)} < ${q(s)}`);
  return { ...r, target };
}

test('truncated stream: error names the position, says what was applied, exit 10', async () => {
  const full = await makeStream([pool.baseDevId]);
  const r = await recvBytes(full.subarray(0, 3 * 1024 * 1024 + 100));
  assert.equal(r.code, 10, r.stderr);
  assert.match(r.stderr, /byte \d+/);
  assert.match(r.stderr, /applied before the error: \d+ data records/);
  // Issue 13: what was applied is rolled back; the target is as it was (all zeros).
  assert.match(r.stderr, /rolled back, the target holds what it held before/);
  assert.ok(readFileSync(r.target).equals(Buffer.alloc(pool.volumeSizeBytes)), 'target still all zeros');
});

test('bad magic and wrong END counts are rejected', async () => {
  const full = await makeStream([pool.baseDevId]);
  const bad = Buffer.from(full);
  bad[0] = 0x00;
  let r = await recvBytes(bad);
  assert.equal(r.code, 10, r.stderr);
  assert.match(r.stderr, /magic/i);
  const counts = Buffer.from(full);
  // END payload is the last 24 bytes: n_chunks, n_data, n_unmap (u64 BE)
  counts.writeBigUInt64BE(counts.readBigUInt64BE(counts.length - 16) + 1n, counts.length - 16);
  r = await recvBytes(counts);
  assert.equal(r.code, 10, r.stderr);
  assert.match(r.stderr, /count|n_data/i);
});

test('checksum mismatch names the volume offset', async () => {
  const full = await makeStream([pool.baseDevId]);
  const bad = Buffer.from(full);
  // flip a byte well inside the first DATA payload (after BEGIN 28 + begin-info record)
  bad[64 * 1024] = bad[64 * 1024]! ^ 0xff;
  const r = await recvBytes(bad);
  assert.equal(r.code, 10, r.stderr);
  assert.match(r.stderr, /checksum/i);
  assert.match(r.stderr, /offset \d+/);
  // The group came before the record: the corrupt record was refused before it was written.
  assert.match(r.stderr, /nothing was applied to the target/);
  assert.ok(readFileSync(r.target).equals(Buffer.alloc(pool.volumeSizeBytes)), 'target still all zeros');
});

test('DATA beyond the target (plain LINBIT stream, no size record): refused with the volume offset', async () => {
  const plain = await makeStream([pool.baseDevId], '--no-extensions');
  const r = await recvBytes(plain, 8 * 1024 * 1024);
  assert.equal(r.code, 10, r.stderr);
  assert.match(r.stderr, /beyond the target .*volume offset \d+/);
  assert.match(r.stderr, /applied before the error/);
});

test('records that cut pool blocks (--max-op-bytes not a multiple of the block size) are read and applied exactly', async () => {
  const target = join(dir, 'cut.img');
  const r = await sh(`${send([pool.baseDevId], '--max-op-bytes 96K')} | ${recv(target)}`);
  assert.equal(r.code, 0, r.stderr);
  assertSameImage(readTarget(target), img1, 'cut records');
});
