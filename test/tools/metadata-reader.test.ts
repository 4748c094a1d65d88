/**
 * The native metadata reader against the thin tools (the reference):
 * - `thinship plan --json` with --metadata-reader native equals thin-tools op
 *   for op, full and incremental, on every kind of offline pool the suite makes
 *   (thin_restore from the recorded scenario and from the generator);
 * - on metadata shaped like the kernel's (a snapshot shares its origin's nodes;
 *   thin_restore cannot make it), read through the metadata snapshot (held
 *   root), the native plans equal thin_dump -m / thin_delta -m, and the delta
 *   reads far fewer blocks than the trees hold.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool, spawnTool } from '../../src/exec/run.js';
import { buildDeltaPlan, buildFullPlan } from '../../src/thin/plan.js';
import { MetadataReader } from '../../src/thin/metadata/reader.js';
import { nativeDeltaPlan, nativeFullPlan, planNative } from '../../src/thin/metadata/native-plan.js';
import { ThinshipError } from '../../src/errors.js';
import { repoRoot } from '../helpers/paths.js';
import { fixtureOutput, generatePool } from '../helpers/metadata-gen.js';
import { runCli } from '../helpers/cli.js';
import { MetadataImage, blockTime, deviceDetails, u64Value } from '../helpers/thin-metadata-writer.js';
import { allOps } from '../helpers/plan-ops.js';

const MiB = 1024 * 1024;

/** `thinship plan --json` with one reader: the parsed output, or the refusal (exit code and message). */
async function planJson(meta: string, names: string[], reader: string, extra: string[] = []): Promise<unknown> {
  const r = await runCli(['plan', '--json', '--metadata-reader', reader, '--pool-metadata', meta, '--pool-data', '/dev/null', ...extra, ...names]);
  if (r.code === 4) return { refused: r.code, stderr: r.stderr };
  assert.equal(r.code, 0, `plan ${names.join(' ')} --metadata-reader ${reader}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The delta's ops read by thin_delta and by the native walk, through the library (no order check: the walk must be right both ways). */
async function assertSameDeltaOps(meta: string, left: number, right: number): Promise<void> {
  const t = spawnTool('thin_delta', ['--snap1', String(left), '--snap2', String(right), meta]);
  const [ref] = await Promise.all([buildDeltaPlan(t.stdout), t.done]);
  const r = await MetadataReader.open(meta);
  try {
    const nat = await nativeDeltaPlan(r, left, right, {});
    assert.deepEqual(await allOps(nat.plan), await allOps(ref.plan), `delta ${left} -> ${right} through the library`);
    assert.deepEqual(nat.plan.totals, ref.plan.totals);
    await nat.plan.close();
  } finally {
    await ref.plan.close();
    await r.close();
  }
}

/**
 * Native and thin-tools plans of every full and incremental send between `ids` are the same, op for op.
 * A pair given newer first is refused by both alike (exit 4); its delta is still compared through the library.
 */
async function assertSamePlans(meta: string, ids: number[], extra: string[] = []): Promise<number> {
  let ops = 0;
  const cases = [...ids.map((i) => [String(i)]), ...ids.flatMap((a) => ids.filter((b) => b !== a).map((b) => [String(a), String(b)]))];
  for (const names of cases) {
    const ref = (await planJson(meta, names, 'thin-tools', extra)) as { ops?: unknown[]; refused?: number };
    const nat = await planJson(meta, names, 'native', extra);
    assert.deepEqual(nat, ref, `plan ${names.join(' ')} ${extra.join(' ')}`);
    if (ref.refused !== undefined) {
      assert.equal(names.length, 2, `only an incremental given newer first is refused: ${JSON.stringify(ref)}`);
      await assertSameDeltaOps(meta, Number(names[0]), Number(names[1]));
      continue;
    }
    ops += ref.ops!.length;
  }
  return ops;
}

test('recorded scenario (thin_restore): native plans equal thin-tools plans op for op, full and incremental', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-native-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const xml = fixtureOutput(join(repoRoot, 'test/fixtures/samples', 'thin_dump-all.xml')).replace('nr_data_blocks="0"', 'nr_data_blocks="16384"');
  const meta = join(dir, 'meta.bin');
  await writeFile(join(dir, 'all.xml'), xml);
  await writeFile(meta, '');
  await truncate(meta, 16 * MiB);
  await runTool('thin_restore', ['-i', join(dir, 'all.xml'), '-o', meta]);
  const ids = [...xml.matchAll(/dev_id="(\d+)"/g)].map((m) => Number(m[1]));
  assert.ok(ids.length >= 2, 'the scenario has several devices');
  const ops = await assertSamePlans(meta, ids);
  assert.ok(ops > 0, 'the plans are not all empty');
  await assertSamePlans(meta, ids.slice(0, 2), ['--volume-size', '256M', '--max-op-bytes', '192K']);

  // An unknown device: NOT_FOUND from both readers, naming it.
  for (const reader of ['native', 'thin-tools']) {
    const r = await runCli(['plan', '--metadata-reader', reader, '--pool-metadata', meta, '--pool-data', '/dev/null', '99']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /thin device id 99 is not in the pool metadata/, reader);
  }
  const bad = await runCli(['plan', '--metadata-reader', 'fast', '--pool-metadata', meta, '--pool-data', '/dev/null', '2']);
  assert.match(bad.stderr, /--metadata-reader must be one of auto, native, thin-tools/);
});

test('generated pools (thin_restore, 3 seeds up to 60 k mappings): native plans equal thin-tools plans op for op', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-native-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const o of [
    { seed: 1, mappings: 500 },
    { seed: 7, mappings: 5_000, rangeFraction: 0.5, removeFraction: 0.2, addFraction: 0.3 },
    { seed: 3, mappings: 60_000 },
  ]) {
    const pool = await generatePool(dir, o);
    const ops = await assertSamePlans(pool.metadataPath, [pool.a.devId, pool.b.devId]);
    assert.ok(ops > 0);
    // And against the generator's own bookkeeping, through the native reader alone.
    const r = await MetadataReader.open(pool.metadataPath);
    try {
      const d = await nativeDeltaPlan(r, pool.a.devId, pool.b.devId, { volumeSizeBytes: pool.volumeSizeBytes });
      assert.deepEqual(d.plan.totals, pool.delta, `seed ${o.seed}`);
      await d.plan.close();
      const f = await nativeFullPlan(r, pool.b.devId, { devId: pool.b.devId, volumeSizeBytes: pool.volumeSizeBytes });
      assert.deepEqual(f.plan.totals, pool.fullB);
      assert.equal(f.device.mappedBlocks, pool.b.mappedBlocks);
      await f.plan.close();
    } finally {
      await r.close();
    }
    await rm(pool.metadataPath);
  }
});

/** A kernel-shaped pool: device 1 with `n` mappings, device 2 its snapshot with `changes` applied by path shadowing. */
function kernelShapedPool(path: string, n: number, changes: (set: (key: number, v: Buffer | undefined) => void) => void) {
  const img = new MetadataImage();
  const entries: [number, Buffer][] = [];
  // Every other block mapped, data scattered, two times.
  for (let i = 0; i < n; i++) entries.push([i * 2, blockTime((i * 7919) % (4 * n), i % 2)]);
  const rootA = img.build(entries, 8);
  img.commit(); // the snapshot: from here on every node is shared
  let rootB = rootA;
  changes((k, v) => {
    rootB = img.set(rootB, k, v);
  });
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
  img.write(path, { mappingRoot: top, detailsRoot: details, dataBlockSizeSectors: 128, nrDataBlocks: 8 * n, time: 2, transaction: 2 });
  return { img, rootA, rootB, treeBlocks: new Set([...img.reachable(rootA), ...img.reachable(rootB)]).size };
}

async function toolPlans(meta: string, args: { full?: number; left?: number; right?: number }, volumeSizeBytes?: number) {
  if (args.full !== undefined) {
    const t = spawnTool('thin_dump', ['-m', '--dev-id', String(args.full), meta]);
    const [r] = await Promise.all([buildFullPlan(t.stdout, { devId: args.full, volumeSizeBytes }), t.done]);
    return r.plan;
  }
  const t = spawnTool('thin_delta', ['-m', '--snap1', String(args.left), '--snap2', String(args.right), meta]);
  const [r] = await Promise.all([buildDeltaPlan(t.stdout, { volumeSizeBytes }), t.done]);
  return r.plan;
}

test(
  'kernel-shaped metadata read through the held root: plans equal thin_dump -m / thin_delta -m; a small change reads a handful of blocks',
  { timeout: 120_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'thinship-native-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const meta = join(dir, 'meta.bin');
    const N = 200_000;
    const pool = kernelShapedPool(meta, N, (set) => {
      set(1001, blockTime(900_001, 2)); // a new block in a hole
      set(1002, blockTime(900_002, 2)); // overwrites: different data
      set(2 * 150_000, undefined); // a discard
      set(2 * N + 10, blockTime(900_003, 2)); // past the origin's last block
    });
    assert.ok(pool.treeBlocks > 1000, `the trees hold ${pool.treeBlocks} blocks`);

    // Reference: thin_delta -m and thin_dump -m (the tools read the metadata snapshot too).
    for (const [left, right] of [
      [1, 2],
      [2, 1],
    ] as const) {
      const ref = await toolPlans(meta, { left, right });
      const refOps = await allOps(ref);
      await ref.close();
      assert.ok(refOps.length >= 3, 'the change shows in the reference plan');
      const r = await MetadataReader.open(meta, { useMetadataSnap: true, dropCache: true });
      try {
        const d = await nativeDeltaPlan(r, left, right, {});
        assert.deepEqual(await allOps(d.plan), refOps, `delta ${left}->${right}`);
        assert.deepEqual(d.plan.totals, ref.totals);
        assert.equal(d.superblock.nrDataBlocks, 0, 'a metadata snapshot has no space map roots');
        await d.plan.close();
        // The skip: superblocks, two device lookups in two trees, two right spines and the changed paths only.
        t.diagnostic(`delta ${left}->${right}: ${r.blocks.blocksRead} metadata blocks read; the two trees hold ${pool.treeBlocks}`);
        assert.ok(r.blocks.blocksRead < 40, `delta ${left}->${right} read ${r.blocks.blocksRead} blocks of ${pool.treeBlocks}`);
      } finally {
        await r.close();
      }
    }

    // Full sends of both devices (every leaf read) equal thin_dump -m.
    for (const dev of [1, 2]) {
      const ref = await toolPlans(meta, { full: dev });
      const refOps = await allOps(ref);
      await ref.close();
      const n = await planNative({ metadataPath: meta, useMetadataSnap: true, snapDevId: dev }, { choice: 'native' });
      assert.ok(n);
      assert.deepEqual(await allOps(n.plan), refOps, `full ${dev}`);
      await n.plan.close();
    }

    // An identical snapshot (same root): no mapping block is read at all.
    const same = join(dir, 'same.bin');
    const p2 = kernelShapedPool(same, 20_000, () => undefined);
    assert.equal(p2.rootA, p2.rootB);
    const r = await MetadataReader.open(same, { useMetadataSnap: true });
    try {
      const d = await nativeDeltaPlan(r, 1, 2, {});
      assert.deepEqual(await allOps(d.plan), []);
      assert.equal(d.plan.totals.volumeSizeBytes, (2 * 19_999 + 1) * 64 * 1024, 'the extent still runs to the last mapped block, as thin_delta says');
      await d.plan.close();
      assert.ok(r.blocks.blocksRead < 12, `read ${r.blocks.blocksRead} blocks`);
    } finally {
      await r.close();
    }
  },
);

test('no metadata snapshot held: the native reader says NO_METADATA_SNAP', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-native-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pool = await generatePool(dir, { seed: 5, mappings: 100 });
  await assert.rejects(
    MetadataReader.open(pool.metadataPath, { useMetadataSnap: true }),
    (e: unknown) => e instanceof ThinshipError && e.code === 'NO_METADATA_SNAP',
  );
});

test('the same data block at another time is unchanged for both readers (thin_delta compares data blocks, not times)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-native-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const meta = join(dir, 'meta.bin');
  const img = new MetadataImage();
  const a = img.build(
    [
      [0, blockTime(5, 0)],
      [1, blockTime(6, 0)],
      [2, blockTime(9, 0)],
    ],
    8,
  );
  const b = img.build(
    [
      [0, blockTime(5, 3)],
      [1, blockTime(7, 0)],
    ],
    8,
  );
  const details = (n: number) => deviceDetails({ mappedBlocks: n, transaction: 1, creationTime: 0, snapTime: 0 });
  img.write(meta, {
    mappingRoot: img.build(
      [
        [1, u64Value(a)],
        [2, u64Value(b)],
      ],
      8,
    ),
    detailsRoot: img.build(
      [
        [1, details(3)],
        [2, details(2)],
      ],
      24,
    ),
    dataBlockSizeSectors: 128,
    nrDataBlocks: 100,
    time: 3,
    transaction: 2,
  });
  const ref = await toolPlans(meta, { left: 1, right: 2 });
  const refOps = await allOps(ref);
  await ref.close();
  const n = await planNative({ metadataPath: meta, useMetadataSnap: true, snapDevId: 2, baseDevId: 1 }, { choice: 'native' });
  assert.ok(n);
  const ops = await allOps(n.plan);
  await n.plan.close();
  assert.deepEqual(ops, refOps);
  assert.deepEqual(ops, [
    { kind: 'data', offsetBytes: 64 * 1024, lengthBytes: 64 * 1024 },
    { kind: 'unmap', offsetBytes: 128 * 1024, lengthBytes: 64 * 1024 },
  ]);
});
