/**
 * The native metadata reader on images written by the test writer (kernel
 * layout, kernel-like sharing): plans against an oracle computed from the
 * writer's entries, and hostile metadata — every corruption is BAD_METADATA
 * naming the block, never a plan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readSync, writeSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, crc32cRawJs, nativeCrc32c } from '../../src/thin/metadata/crc32c.js';
import { metadataAddon } from '../../src/thin/metadata/addon.js';
import { KEY_END, firstBadKeyJs, parseNodeJs } from '../../src/thin/metadata/btree.js';
import { walkDelta, walkDeltaNative } from '../../src/thin/metadata/delta.js';
import { MetadataReader } from '../../src/thin/metadata/reader.js';
import { nativeDeltaPlan, nativeFullPlan, planNative, checkMetadataReaderChoice } from '../../src/thin/metadata/native-plan.js';
import { PLAN_RUN_UNMAP, planOps, type PlanRange } from '../../src/thin/plan.js';
import type { PlanOp } from '../../src/thin/model.js';
import { ThinshipError } from '../../src/errors.js';
import { MetadataImage, blockTime, deviceDetails, reChecksum, u64Value } from '../helpers/thin-metadata-writer.js';
import { prng } from '../helpers/prng.js';
import { allOps } from '../helpers/plan-ops.js';

const BLOCK_BYTES = 64 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'thinship-meta-unit-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;

interface Pool {
  path: string;
  img: MetadataImage;
  rootA: number;
  rootB: number;
  a: Map<number, Buffer>;
  b: Map<number, Buffer>;
}

/** Device 1 with n mappings (every third block), device 2 its snapshot with a few changes (kernel-like sharing). */
function pool(n: number, version = 2): Pool {
  const img = new MetadataImage();
  const entries: [number, Buffer][] = [];
  for (let i = 0; i < n; i++) entries.push([i * 3, blockTime(10 + ((i * 48271) % (2 * n)), i % 3)]);
  const rootA = img.build(entries, 8);
  img.commit();
  let rootB = rootA;
  const set = (k: number, v: Buffer | undefined) => {
    rootB = img.set(rootB, k, v);
  };
  set(1, blockTime(5 * n, 4));
  set(2, blockTime(5 * n + 1, 4)); // right_only, adjacent to a same block at 0 and 3
  set(30, blockTime(5 * n + 2, 4)); // different
  set(33, undefined); // left_only
  set(3 * (n - 1) + 7, blockTime(5 * n + 3, 4)); // past A's end
  const top = img.build(
    [
      [1, u64Value(rootA)],
      [2, u64Value(rootB)],
    ],
    8,
  );
  const details = img.build(
    [
      [1, deviceDetails({ mappedBlocks: n, transaction: 1, creationTime: 0, snapTime: 0 })],
      [2, deviceDetails({ mappedBlocks: img.entries(rootB).length, transaction: 2, creationTime: 1, snapTime: 1 })],
    ],
    24,
  );
  const path = join(dir, `meta-${fileNo++}.bin`);
  img.write(path, { mappingRoot: top, detailsRoot: details, dataBlockSizeSectors: 128, nrDataBlocks: 10 * n, time: 2, transaction: 2, version });
  return { path, img, rootA, rootB, a: new Map(img.entries(rootA)), b: new Map(img.entries(rootB)) };
}

/** The oracle: block by block from the writer's own entries. */
function expectedDelta(a: Map<number, Buffer>, b: Map<number, Buffer>): PlanOp[] {
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort((x, y) => x - y);
  const data = (v: Buffer) => v.readBigUInt64LE() >> 24n;
  const ranges: PlanRange[] = [];
  for (const k of keys) {
    const l = a.get(k),
      r = b.get(k);
    if (l && r && data(l) === data(r)) continue;
    ranges.push({ kind: r ? 'data' : 'unmap', beginBlock: k, lengthBlocks: 1 });
  }
  return planOps(ranges, { blockSizeBytes: BLOCK_BYTES, volumeSizeBytes: (keys[keys.length - 1]! + 1) * BLOCK_BYTES }).ops;
}

function patchBlock(path: string, block: number, edit: (b: Buffer) => void): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(4096);
    readSync(fd, b, 0, 4096, block * 4096);
    edit(b);
    writeSync(fd, b, 0, 4096, block * 4096);
  } finally {
    closeSync(fd);
  }
}

async function fullOf(path: string, devId: number, snap = false): Promise<PlanOp[]> {
  const r = await MetadataReader.open(path, { useMetadataSnap: snap });
  try {
    return await allOps((await nativeFullPlan(r, devId, { devId })).plan, { close: true });
  } finally {
    await r.close();
  }
}

async function deltaOf(path: string, left: number, right: number): Promise<PlanOp[]> {
  const r = await MetadataReader.open(path);
  try {
    return await allOps((await nativeDeltaPlan(r, left, right, {})).plan, { close: true });
  } finally {
    await r.close();
  }
}

/** A walk's output as merged plan runs: [first block, length, 'data' | 'unmap'][]. */
type Runs = Array<[number, number, 'data' | 'unmap']>;

function mergeRun(out: Runs, begin: number, len: number, kind: 'data' | 'unmap'): void {
  const last = out[out.length - 1];
  if (last !== undefined && last[2] === kind && last[0] + last[1] === begin) last[1] += len;
  else out.push([begin, len, kind]);
}

/** The delta of devices left..right by the addon's walk (deltaWalkStart/Next) and by walkDelta, its JavaScript twin. */
async function deltaRunsBothWays(path: string, left: number, right: number): Promise<{ addon: Runs; js: Runs }> {
  const r = await MetadataReader.open(path);
  try {
    const l = { root: (await r.deviceRoot(left)).root, devId: left },
      s = { root: (await r.deviceRoot(right)).root, devId: right };
    const addon: Runs = [];
    const stats = await walkDeltaNative(r.blocks, l, s, (runs, count) => {
      for (let j = 0; j < 3 * count; j += 3) mergeRun(addon, runs[j]!, runs[j + 1]!, runs[j + 2] === PLAN_RUN_UNMAP ? 'unmap' : 'data');
    });
    assert.ok(stats, 'the addon exports deltaWalkStart and deltaWalkNext (npm ci builds it)');
    const js: Runs = [];
    await walkDelta(r.blocks, l, s, (batch) => {
      for (const x of batch) if (x.kind !== 'same') mergeRun(js, x.beginBlock, x.lengthBlocks, x.kind === 'left_only' ? 'unmap' : 'data');
    });
    return { addon, js };
  } finally {
    await r.close();
  }
}

/** The error each walk gives on `path` (left..right): the addon's must be the JavaScript twin's, word for word. */
async function deltaErrorsBothWays(path: string, left: number, right: number): Promise<{ addon: unknown; js: unknown }> {
  const r = await MetadataReader.open(path);
  try {
    const l = { root: (await r.deviceRoot(left)).root, devId: left },
      s = { root: (await r.deviceRoot(right)).root, devId: right };
    const errorOf = async (f: () => Promise<unknown>): Promise<unknown> => {
      try {
        await f();
      } catch (e) {
        return e;
      }
      assert.fail('the walk did not fail');
    };
    return {
      addon: await errorOf(() => walkDeltaNative(r.blocks, l, s, () => undefined)),
      js: await errorOf(() => walkDelta(r.blocks, l, s, () => undefined)),
    };
  } finally {
    await r.close();
  }
}

/** Device devId's mapped runs by the addon's walk (mappedRunsWalkStart/Next, what walkMappedRuns runs) and by walkMappedRunsJs, its twin; or the error each gives. */
async function fullRunsBothWays(path: string, devId: number): Promise<{ addon: number[] | Error; js: number[] | Error; blocksRead: [number, number] }> {
  const r = await MetadataReader.open(path);
  try {
    const { root } = await r.deviceRoot(devId);
    const collect = async (walk: (on: (pairs: Float64Array, count: number) => void) => Promise<void>): Promise<number[] | Error> => {
      const out: number[] = [];
      try {
        await walk((pairs, count) => {
          for (let j = 0; j < 2 * count; j += 2) {
            // Batches may end inside a run the next one continues: join them, as the plan's Coalescer does.
            if (out.length > 0 && out[out.length - 2]! + out[out.length - 1]! === pairs[j]!) out[out.length - 1]! += pairs[j + 1]!;
            else out.push(pairs[j]!, pairs[j + 1]!);
          }
        });
      } catch (e) {
        return e as Error;
      }
      return out;
    };
    assert.ok(metadataAddon().mappedRunsWalkStart, 'the addon exports mappedRunsWalkStart');
    const read0 = r.blocks.blocksRead;
    const addon = await collect((on) => r.walkMappedRuns(root, devId, on));
    const read1 = r.blocks.blocksRead;
    const js = await collect((on) => r.walkMappedRunsJs(root, devId, on));
    return { addon, js, blocksRead: [read1 - read0, r.blocks.blocksRead - read1] };
  } finally {
    await r.close();
  }
}

const badAt =
  (block: number, what: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof ThinshipError, String(e));
    assert.equal(e.code, 'BAD_METADATA', e.message);
    assert.match(e.message, new RegExp(`block ${block}\\b`), e.message);
    assert.match(e.message, what);
    return true;
  };

test('crc32c: the standard check value', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(0)), 0);
});

test('crc32c: the addon (SSE4.2) equals the JavaScript reference on random data, seeds and ranges, and refuses a range outside the buffer', () => {
  const native = nativeCrc32c();
  assert.ok(native, 'the addon exports crc32c (npm ci builds it)');
  const rnd = prng(15);
  for (let n = 0; n < 200; n++) {
    const b = Buffer.alloc(Math.floor(rnd() * 9000));
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
    const start = Math.floor(rnd() * (b.length + 1));
    const end = start + Math.floor(rnd() * (b.length - start + 1));
    const seed = n % 3 === 0 ? 0xffffffff : Math.floor(rnd() * 0x1_0000_0000);
    assert.equal(native(seed, b, start, end), crc32cRawJs(seed, b, start, end), `length ${b.length}, [${start}, ${end}), seed ${seed}`);
  }
  assert.throws(() => native(0, Buffer.alloc(8), 4, 9), RangeError);
  assert.throws(() => native(0, Buffer.alloc(8), 5, 4), RangeError);
});

test('btree key scan: the addon finds the same first bad key as the JavaScript rule (order, range, beyond 2^53)', () => {
  const native = metadataAddon().firstBadKey;
  assert.ok(native, 'the addon exports firstBadKey');
  const rnd = prng(16);
  const node = Buffer.alloc(4096);
  for (let n = 0; n < 2000; n++) {
    const nr = Math.floor(rnd() * 20);
    let k = Math.floor(rnd() * 50);
    for (let i = 0; i < nr; i++) {
      const r = rnd();
      // Mostly increasing; sometimes equal, smaller, or beyond the safe integers.
      const key = r < 0.03 ? BigInt(k) : r < 0.06 ? BigInt(Math.max(0, k - 3)) : r < 0.08 ? (1n << 53n) + BigInt(i) : BigInt((k += 1 + Math.floor(rnd() * 5)));
      node.writeBigUInt64LE(key, 32 + 8 * i);
    }
    const lo = Math.floor(rnd() * 10);
    const hi = rnd() < 0.5 ? KEY_END : lo + Math.floor(rnd() * 120);
    assert.equal(native(node, nr, lo, hi), firstBadKeyJs(node, nr, lo, hi), `case ${n}: nr ${nr}, [${lo}, ${hi})`);
  }
});

test('plans from kernel-shaped metadata equal the oracle (both directions, both superblocks), and the walk skips what is shared', async () => {
  const p = pool(40_000); // three levels
  assert.deepEqual(await deltaOf(p.path, 1, 2), expectedDelta(p.a, p.b));
  assert.deepEqual(await deltaOf(p.path, 2, 1), expectedDelta(p.b, p.a));
  const fullB = planOps(
    [...p.b.keys()].map((k) => ({ kind: 'data' as const, beginBlock: k, lengthBlocks: 1 })),
    { blockSizeBytes: BLOCK_BYTES },
  ).ops;
  assert.deepEqual(await fullOf(p.path, 2), fullB);
  assert.deepEqual(await fullOf(p.path, 2, true), fullB);
  const r = await MetadataReader.open(p.path);
  try {
    const d = await nativeDeltaPlan(r, 1, 2, {});
    await d.plan.close();
    const treeBlocks = new Set([...p.img.reachable(p.rootA), ...p.img.reachable(p.rootB)]).size;
    assert.ok(r.blocks.blocksRead < 30 && treeBlocks > 200, `read ${r.blocks.blocksRead} of ${treeBlocks}`);
  } finally {
    await r.close();
  }
});

test('a flipped byte in a btree node is BAD_METADATA naming the block (full walk and delta walk)', async () => {
  const p = pool(2_000);
  // A leaf only device 2 has (on the shadowed path), and one both share.
  const own = [...p.img.reachable(p.rootB)].find((b) => !p.img.reachable(p.rootA).has(b) && p.img.nodes.get(b)!.leaf)!;
  patchBlock(p.path, own, (b) => {
    b.writeUInt8(b.readUInt8(100) ^ 0x40, 100);
  });
  await assert.rejects(fullOf(p.path, 2), badAt(own, /checksum mismatch/));
  await assert.rejects(deltaOf(p.path, 1, 2), badAt(own, /checksum mismatch/));
  const shared = [...p.img.reachable(p.rootA)].find((b) => p.img.reachable(p.rootB).has(b) && p.img.nodes.get(b)!.leaf)!;
  const q = pool(2_000);
  patchBlock(q.path, shared, (b) => {
    b.writeUInt8(b.readUInt8(4000) ^ 1, 4000);
  });
  await assert.rejects(fullOf(q.path, 1), badAt(shared, /checksum mismatch/));
});

test('a loop (a child pointing at its ancestor) is BAD_METADATA naming the block', async () => {
  const p = pool(40_000);
  const root = p.img.nodes.get(p.rootA)!;
  const mid = root.values[1] as number; // an internal node under the root
  assert.equal(p.img.nodes.get(mid)!.leaf, false);
  patchBlock(p.path, mid, (b) => {
    b.writeBigUInt64LE(BigInt(p.rootA), 32 + 8 * 252);
    reChecksum(b, 'node');
  });
  await assert.rejects(fullOf(p.path, 1), badAt(p.rootA, /loop/));
  await assert.rejects(deltaOf(p.path, 2, 1), badAt(p.rootA, /loop/));
});

test("keys out of order, keys outside the parent's range, a block beyond the device, a node claiming another number: BAD_METADATA naming the block", async () => {
  const p = pool(2_000);
  const leaf = p.img.nodes.get(p.rootA)!.values[2] as number;
  patchBlock(p.path, leaf, (b) => {
    const k0 = b.readBigUInt64LE(32);
    b.writeBigUInt64LE(b.readBigUInt64LE(40), 32);
    b.writeBigUInt64LE(k0, 40);
    reChecksum(b, 'node');
  });
  await assert.rejects(fullOf(p.path, 1), badAt(leaf, /keys out of order/));

  const q = pool(2_000);
  const leaf3 = q.img.nodes.get(q.rootA)!.values[3] as number;
  patchBlock(q.path, leaf3, (b) => {
    b.writeBigUInt64LE(0n, 32);
    reChecksum(b, 'node');
  }); // smaller than the parent's key for it
  await assert.rejects(fullOf(q.path, 1), badAt(leaf3, /outside the range/));

  const r = pool(2_000);
  patchBlock(r.path, r.rootA, (b) => {
    b.writeBigUInt64LE(1_000_000n, 32 + 8 * 252 + 8);
    reChecksum(b, 'node');
  });
  await assert.rejects(fullOf(r.path, 1), badAt(1_000_000, /outside the metadata device/));

  const s = pool(2_000);
  const leaf4 = s.img.nodes.get(s.rootA)!.values[4] as number;
  patchBlock(s.path, leaf4, (b) => {
    b.writeBigUInt64LE(BigInt(leaf4 + 1), 8);
    reChecksum(b, 'node');
  });
  await assert.rejects(fullOf(s.path, 1), badAt(leaf4, /says it is block/));
});

test("the addon's delta walk on hostile metadata: a bad checksum, a loop, keys out of order, a block outside the device are BAD_METADATA naming the block, as the JavaScript walk words them", async () => {
  assert.ok(metadataAddon().deltaWalkStart, 'the addon exports deltaWalkStart');
  /** Device 2's own nodes (on the paths its writes shadowed): the ones a delta reads. */
  const ownNodes = (p: Pool, leaf: boolean): number[] =>
    [...p.img.reachable(p.rootB)].filter((b) => !p.img.reachable(p.rootA).has(b) && p.img.nodes.get(b)!.leaf === leaf && b !== p.rootB);
  const expectBoth = async (path: string, block: number, what: RegExp): Promise<void> => {
    await assert.rejects(deltaOf(path, 1, 2), badAt(block, what));
    const { addon, js } = await deltaErrorsBothWays(path, 1, 2);
    assert.ok(addon instanceof ThinshipError && js instanceof ThinshipError, `${String(addon)} / ${String(js)}`);
    assert.equal(addon.message, js.message);
    assert.deepEqual([addon.code, addon.details], [js.code, js.details]);
    assert.deepEqual(addon.details, { block });
  };

  const p = pool(40_000); // three levels: the root, internal nodes, leaves
  const leaf = ownNodes(p, true)[0]!;
  patchBlock(p.path, leaf, (b) => {
    b.writeUInt8(b.readUInt8(2000) ^ 0x10, 2000);
  });
  await expectBoth(p.path, leaf, /checksum mismatch/);

  const q = pool(40_000);
  const mid = ownNodes(q, false)[0]!; // an internal node under device 2's root, on a shadowed path
  patchBlock(q.path, mid, (b) => {
    b.writeBigUInt64LE(BigInt(q.rootB), 32 + 8 * b.readUInt32LE(20)); // child 0 -> the root
    reChecksum(b, 'node');
  });
  await expectBoth(q.path, q.rootB, /loop: block \d+ points back to its ancestor/);

  const r = pool(40_000);
  const leafR = ownNodes(r, true)[0]!;
  patchBlock(r.path, leafR, (b) => {
    const k0 = b.readBigUInt64LE(32);
    b.writeBigUInt64LE(b.readBigUInt64LE(40), 32);
    b.writeBigUInt64LE(k0, 40);
    reChecksum(b, 'node');
  });
  await expectBoth(r.path, leafR, /keys out of order \(key 1 is/);

  const s = pool(40_000);
  const midS = ownNodes(s, false)[0]!;
  patchBlock(s.path, midS, (b) => {
    b.writeBigUInt64LE(1_000_000n, 32 + 8 * b.readUInt32LE(20) + 8); // child 1 -> past the end of the metadata
    reChecksum(b, 'node');
  });
  await expectBoth(s.path, 1_000_000, /outside the metadata device/);

  // The addon's full walk (device 2's whole tree) meets the same faults, worded as its JavaScript twin words them.
  for (const [path, block, what] of [
    [p.path, leaf, /checksum mismatch/],
    [q.path, q.rootB, /loop/],
    [r.path, leafR, /keys out of order/],
    [s.path, 1_000_000, /outside the metadata device/],
  ] as const) {
    await assert.rejects(fullOf(path, 2), badAt(block, what));
    const { addon, js } = await fullRunsBothWays(path, 2);
    assert.ok(addon instanceof ThinshipError && js instanceof ThinshipError, `${String(addon)} / ${String(js)}`);
    assert.equal(addon.message, js.message);
    assert.deepEqual(addon.details, { block });
  }
});

test('superblock: bad magic, bad checksum, wrong block number are BAD_METADATA; an unknown version falls back (auto) or is refused (native)', async () => {
  const p = pool(100);
  patchBlock(p.path, 0, (b) => {
    b.writeUInt8(b.readUInt8(200) ^ 1, 200);
  });
  await assert.rejects(MetadataReader.open(p.path), badAt(0, /checksum mismatch/));
  patchBlock(p.path, 0, (b) => {
    b.writeUInt8(b.readUInt8(200) ^ 1, 200);
    b.writeBigUInt64LE(1234n, 32);
    reChecksum(b, 'superblock');
  });
  await assert.rejects(MetadataReader.open(p.path), badAt(0, /bad magic 1234/));
  const q = pool(100);
  patchBlock(q.path, 1, (b) => {
    b.writeBigUInt64LE(0n, 8);
    reChecksum(b, 'superblock');
  });
  await assert.rejects(MetadataReader.open(q.path, { useMetadataSnap: true }), badAt(1, /says it is block 0/));

  const v = pool(100, 3);
  assert.equal(await planNative({ metadataPath: v.path, useMetadataSnap: false, snapDevId: 1 }, { choice: 'auto' }), undefined);
  await assert.rejects(
    planNative({ metadataPath: v.path, useMetadataSnap: false, snapDevId: 1 }, { choice: 'native' }),
    (e: unknown) => e instanceof ThinshipError && e.code === 'BAD_METADATA' && /version 3/.test(e.message) && /--metadata-reader thin-tools/.test(e.message),
  );
  const f = pool(100);
  patchBlock(f.path, 0, (b) => {
    b.writeUInt32LE(1, 360);
    reChecksum(b, 'superblock');
  });
  assert.equal(await planNative({ metadataPath: f.path, useMetadataSnap: false, snapDevId: 1 }, { choice: 'auto' }), undefined);
  assert.equal(checkMetadataReaderChoice(undefined, undefined), 'auto');
  assert.equal(checkMetadataReaderChoice(undefined, 'thin-tools'), 'thin-tools');
  assert.equal(checkMetadataReaderChoice('native', 'thin-tools'), 'native', 'the flag wins over the environment');
  assert.throws(
    () => checkMetadataReaderChoice('xml', undefined),
    (e: unknown) => e instanceof ThinshipError && e.code === 'USAGE' && /--metadata-reader/.test(e.message),
  );
  assert.throws(
    () => checkMetadataReaderChoice(undefined, 'xml'),
    (e: unknown) => e instanceof ThinshipError && e.code === 'USAGE' && /THINSHIP_METADATA_READER/.test(e.message),
  );
});

test('a device in only one of the two trees is BAD_METADATA; in neither, NOT_FOUND listing the devices', async () => {
  const img = new MetadataImage();
  const leaf = img.build([[0, blockTime(1, 0)]], 8);
  const top = img.build([[1, u64Value(leaf)]], 8);
  const details = img.build(
    [
      [1, deviceDetails({ mappedBlocks: 1, transaction: 1, creationTime: 0, snapTime: 0 })],
      [5, deviceDetails({ mappedBlocks: 0, transaction: 1, creationTime: 0, snapTime: 0 })],
    ],
    24,
  );
  const path = join(dir, 'one-tree.bin');
  img.write(path, { mappingRoot: top, detailsRoot: details, dataBlockSizeSectors: 128, nrDataBlocks: 10, time: 1, transaction: 1 });
  await assert.rejects(fullOf(path, 5), (e: unknown) => e instanceof ThinshipError && e.code === 'BAD_METADATA' && /device 5/.test(e.message));
  await assert.rejects(deltaOf(path, 1, 7), (e: unknown) => e instanceof ThinshipError && e.code === 'NOT_FOUND' && /devices found: 1, 5/.test(e.message));
});

test('property: deltas of random trees (deep, narrow, shared or not, changed anywhere) equal the oracle', async () => {
  for (let seed = 1; seed <= 60; seed++) {
    const rnd = prng(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const img = new MetadataImage();
    const n = int(1500);
    const keys = new Set<number>();
    while (keys.size < n) keys.add(1 + int(4 * n + 10));
    const entries = [...keys].sort((x, y) => x - y).map((k): [number, Buffer] => [k, blockTime(int(50), int(3))]);
    // Narrow nodes make deep trees; the reader does not care how full a node is.
    const perLeaf = 1 + int(12),
      perInternal = 2 + int(4);
    const rootA = img.build(entries, 8, perLeaf, perInternal);
    img.commit();
    let rootB: number;
    if (rnd() < 0.2) {
      // Built separately: nothing shared, other node boundaries.
      const other = entries.filter(() => rnd() < 0.8).map(([k, v]): [number, Buffer] => [k, rnd() < 0.1 ? blockTime(int(50), 0) : v]);
      rootB = img.build(other, 8, 1 + int(12), 2 + int(4));
    } else {
      rootB = rootA;
      for (let c = int(40); c > 0; c--) {
        const k = int(4 * n + 20); // may be below every key (the path's first keys change) or past the last
        rootB = img.set(rootB, k, rnd() < 0.3 ? undefined : blockTime(int(50), 5));
      }
      if (rnd() < 0.3) img.commit(); // a later snapshot of the snapshot: its nodes are shared again
      if (rnd() < 0.3) for (const k of [...keys].slice(0, 3)) rootB = img.set(rootB, k, undefined);
    }
    const top = img.build(
      [
        [1, u64Value(rootA)],
        [2, u64Value(rootB)],
      ],
      8,
    );
    const det = (x: number) => deviceDetails({ mappedBlocks: x, transaction: 1, creationTime: 0, snapTime: 0 });
    const path = join(dir, `prop-${seed}.bin`);
    img.write(path, {
      mappingRoot: top,
      detailsRoot: img.build(
        [
          [1, det(n)],
          [2, det(0)],
        ],
        24,
      ),
      dataBlockSizeSectors: 128,
      nrDataBlocks: 100,
      time: 5,
      transaction: 1,
    });
    const a = new Map(img.entries(rootA)),
      b = new Map(img.entries(rootB));
    if (a.size + b.size === 0) continue;
    assert.deepEqual(await deltaOf(path, 1, 2), expectedDelta(a, b), `seed ${seed} 1->2`);
    assert.deepEqual(await deltaOf(path, 2, 1), expectedDelta(b, a), `seed ${seed} 2->1`);
    // The addon's walk (what deltaOf ran) and its JavaScript twin give the same runs.
    const both = await deltaRunsBothWays(path, 1, 2);
    assert.deepEqual(both.addon, both.js, `seed ${seed}: addon and JavaScript walks`);
    if (b.size > 0) {
      const full = planOps(
        [...b.keys()].map((k) => ({ kind: 'data' as const, beginBlock: k, lengthBlocks: 1 })),
        { blockSizeBytes: BLOCK_BYTES },
      ).ops;
      assert.deepEqual(await fullOf(path, 2), full, `seed ${seed} full`);
      const fb = await fullRunsBothWays(path, 2);
      assert.deepEqual(fb.addon, fb.js, `seed ${seed}: addon and JavaScript full walks`);
    }
    rmSync(path);
  }
});

test('a truncated or empty metadata file is BAD_METADATA naming the block, not a short plan', async () => {
  const p = pool(2_000);
  const last = Math.max(...p.img.nodes.keys()); // the last node written (a tree root)
  const { truncateSync, writeFileSync } = await import('node:fs');
  truncateSync(p.path, last * 4096 + 100); // cut inside it
  await assert.rejects(fullOf(p.path, 1), badAt(last, /outside the metadata device/));
  const empty = join(dir, 'empty.bin');
  writeFileSync(empty, '');
  await assert.rejects(MetadataReader.open(empty), badAt(0, /outside the metadata device/));
});

test('btree node check: the addon accepts exactly the nodes the JavaScript checks accept (checksum, block number, header, keys)', () => {
  const checkNode = metadataAddon().checkNode;
  assert.ok(checkNode, 'the addon exports checkNode');
  const p = pool(3000);
  const rnd = prng(17);
  const fd = openSync(p.path, 'r');
  try {
    const nodes: Array<{ block: number; buf: Buffer }> = [];
    for (const block of p.img.reachable(p.rootB)) {
      const buf = Buffer.alloc(4096);
      readSync(fd, buf, 0, 4096, block * 4096);
      nodes.push({ block, buf });
    }
    const jsAccepts = (buf: Buffer, block: number, lo: number, hi: number): boolean => {
      try {
        parseNodeJs(buf, block, 8, lo, hi, 'test');
        return true;
      } catch (e) {
        assert.equal((e as ThinshipError).code, 'BAD_METADATA');
        return false;
      }
    };
    let accepted = 0,
      refused = 0;
    for (let n = 0; n < 3000; n++) {
      const { block, buf: orig } = nodes[Math.floor(rnd() * nodes.length)]!;
      const buf = Buffer.from(orig);
      const r = rnd();
      // Untouched, or a header field / key / byte changed (re-checksummed or not), or another block number or key range.
      if (r < 0.6) {
        const at = r < 0.3 ? 4 + Math.floor(rnd() * 28) : 32 + Math.floor(rnd() * 64);
        buf[at] = rnd() < 0.5 ? buf[at]! ^ (1 << Math.floor(rnd() * 8)) : Math.floor(rnd() * 256);
        if (rnd() < 0.8) reChecksum(buf, 'node');
      } else if (r < 0.7) buf[100 + Math.floor(rnd() * 3990)]! ^= 1;
      const b = r > 0.7 && r < 0.75 ? block + 1 : block;
      const lo = r > 0.75 && r < 0.85 ? Math.floor(rnd() * 9000) : 0;
      const hi = r > 0.85 && r < 0.95 ? Math.floor(rnd() * 9000) : KEY_END;
      const want = jsAccepts(buf, b, lo, hi);
      assert.equal(checkNode(buf, b, 8, lo, hi), want, `case ${n}: block ${b}, [${lo}, ${hi})`);
      if (want) accepted++;
      else refused++;
    }
    assert.ok(accepted > 300 && refused > 300, `both outcomes exercised: ${accepted} accepted, ${refused} refused`);
  } finally {
    closeSync(fd);
  }
});

test('full plan from runs of mapped blocks (the plan keeps no mappings) equals the one from each mapping, across leaves and batches', async () => {
  const img = new MetadataImage();
  const rnd = prng(19);
  const entries: [number, Buffer][] = [];
  // ~12 000 runs (more than one batch), many of them crossing a leaf boundary.
  for (let k = 0, i = 0; i < 40_000; i++) {
    k += rnd() < 0.7 ? 1 : 2 + Math.floor(rnd() * 3);
    entries.push([k, blockTime(i * 7, 0)]);
  }
  const root = img.build(entries, 8);
  const path = join(dir, `meta-${fileNo++}.bin`);
  img.write(path, {
    mappingRoot: img.build([[1, u64Value(root)]], 8),
    detailsRoot: img.build([[1, deviceDetails({ mappedBlocks: entries.length, transaction: 1, creationTime: 0, snapTime: 0 })]], 24),
    dataBlockSizeSectors: 128,
    nrDataBlocks: 300_000,
    time: 1,
    transaction: 1,
  });
  const want = planOps(
    entries.map(([k]) => ({ kind: 'data' as const, beginBlock: k, lengthBlocks: 1 })),
    { blockSizeBytes: BLOCK_BYTES },
  ).ops;
  const both = await fullRunsBothWays(path, 1);
  assert.ok(Array.isArray(both.addon) && both.addon.length > 2 * 4096, 'more than one batch of runs');
  assert.deepEqual(both.addon, both.js, "the addon's full walk and its JavaScript twin");
  assert.equal(both.blocksRead[0], both.blocksRead[1], 'both read every block of the tree once');
  const r = await MetadataReader.open(path);
  try {
    const runs = await nativeFullPlan(r, 1, { devId: 1 });
    assert.deepEqual(await allOps(runs.plan), want);
    const withMappings = await nativeFullPlan(r, 1, { devId: 1, mappingSpool: true });
    assert.deepEqual(await allOps(withMappings.plan), want);
    assert.equal(withMappings.mappings!.records > 0, true);
    await withMappings.mappings!.close();
  } finally {
    await r.close();
  }
});
