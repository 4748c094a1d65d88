/**
 * Real thin_restore -> thin_dump / thin_delta on metadata files, parsed into
 * plans. The large-pool test runs the planning in a child process (this file,
 * re-run with THINSHIP_PLAN_CHILD set) to read its peak RSS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool, spawnTool } from '../../src/exec/run.js';
import { buildDeltaPlan, buildFullPlan, type Plan } from '../../src/thin/plan.js';
import { parseThinDump } from '../../src/thin/xml/dump.js';
import type { Mapping, PlanTotals } from '../../src/thin/model.js';
import { ThinshipError } from '../../src/errors.js';
import { repoRoot } from '../helpers/paths.js';
import { fixtureOutput, generatePool } from '../helpers/metadata-gen.js';
import { allOps } from '../helpers/plan-ops.js';

const CHILD_ENV = 'THINSHIP_PLAN_CHILD';
const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;

/** Runs thin_dump and plans device `devId` as the planner does: parse while the tool prints, then check its exit. */
async function fullPlanOf(meta: string, devId: number, opts: { volumeSizeBytes?: number; mappingSpool?: boolean; spoolDir?: string } = {}) {
  const t = spawnTool('thin_dump', ['--dev-id', String(devId), meta]);
  const [r] = await Promise.all([buildFullPlan(t.stdout, { devId, ...opts }), t.done]);
  return r;
}

async function deltaPlanOf(meta: string, left: number, right: number, opts: { verbose?: boolean; volumeSizeBytes?: number; spoolDir?: string } = {}) {
  const t = spawnTool('thin_delta', [...(opts.verbose ? ['--verbose'] : []), '--snap1', String(left), '--snap2', String(right), meta]);
  const [r] = await Promise.all([buildDeltaPlan(t.stdout, { volumeSizeBytes: opts.volumeSizeBytes, spoolDir: opts.spoolDir }), t.done]);
  return r;
}

/** Iterates a plan, checking order, and sums what it holds. */
async function walkPlan(plan: Plan): Promise<{ dataBytes: number; unmapBytes: number; dataOps: number; unmapOps: number }> {
  const s = { dataBytes: 0, unmapBytes: 0, dataOps: 0, unmapOps: 0 };
  let end = 0;
  for await (const b of plan.batches()) {
    for (const o of b) {
      if (o.offsetBytes < end) throw new Error(`op at ${o.offsetBytes} before the end of the previous one (${end})`);
      end = o.offsetBytes + o.lengthBytes;
      if (o.kind === 'data') {
        s.dataBytes += o.lengthBytes;
        s.dataOps++;
      } else {
        s.unmapBytes += o.lengthBytes;
        s.unmapOps++;
      }
    }
  }
  return s;
}

interface ChildArgs {
  metadataPath: string;
  devId: number;
  left: number;
  right: number;
  volumeSizeBytes: number;
  spoolDir: string;
}
interface ChildResult {
  full: PlanTotals;
  fullWalk: Awaited<ReturnType<typeof walkPlan>>;
  fullMs: number;
  delta: PlanTotals;
  deltaWalk: Awaited<ReturnType<typeof walkPlan>>;
  deltaMs: number;
  mappingRecords: number;
  hwmKiB: number;
}

/** The child: plans the full send (with the offline mapping spool) and the delta, then reports its peak RSS. */
async function child(a: ChildArgs): Promise<void> {
  let t0 = performance.now();
  const f = await fullPlanOf(a.metadataPath, a.devId, { volumeSizeBytes: a.volumeSizeBytes, mappingSpool: true, spoolDir: a.spoolDir });
  const fullMs = performance.now() - t0;
  const fullWalk = await walkPlan(f.plan);
  const mappingRecords = f.mappings!.records;
  await f.plan.close();
  await f.mappings!.close();
  t0 = performance.now();
  const d = await deltaPlanOf(a.metadataPath, a.left, a.right, { volumeSizeBytes: a.volumeSizeBytes, spoolDir: a.spoolDir });
  const deltaMs = performance.now() - t0;
  const deltaWalk = await walkPlan(d.plan);
  await d.plan.close();
  const status = await readFile('/proc/self/status', 'utf8');
  const hwmKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]);
  const out: ChildResult = { full: f.plan.totals, fullWalk, fullMs, delta: d.plan.totals, deltaWalk, deltaMs, mappingRecords, hwmKiB };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

if (process.env[CHILD_ENV] !== undefined) {
  await child(JSON.parse(process.env[CHILD_ENV]) as ChildArgs);
} else {
  registerTests();
}

function registerTests(): void {
  test('the recorded scenario rebuilt with thin_restore: tools print the samples again, plans are exact', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'thinship-tools-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const sample = (name: string) => fixtureOutput(join(repoRoot, 'test/fixtures/samples', name));
    // Recorded with -m (from a metadata snapshot), so nr_data_blocks is 0; thin_restore needs the real pool size
    // (1 GiB of 64 KiB chunks in the scenario).
    const POOL_BLOCKS = 'nr_data_blocks="16384"';
    const xml = sample('thin_dump-all.xml').replace('nr_data_blocks="0"', POOL_BLOCKS);
    const meta = join(dir, 'meta.bin');
    await writeFile(join(dir, 'all.xml'), xml);
    await writeFile(meta, '');
    await truncate(meta, 16 * MiB);
    await runTool('thin_restore', ['-i', join(dir, 'all.xml'), '-o', meta]);

    // The restored metadata prints exactly what the real pool printed.
    assert.equal((await runTool('thin_dump', [meta])).stdout, xml);
    assert.equal(
      (await runTool('thin_delta', ['--snap1', '2', '--snap2', '3', meta])).stdout,
      sample('thin_delta.xml').replace('nr_data_blocks="0"', POOL_BLOCKS),
    );
    assert.equal(
      (await runTool('thin_delta', ['--verbose', '--snap1', '2', '--snap2', '3', meta])).stdout,
      sample('thin_delta-verbose.xml').replace('nr_data_blocks="0"', POOL_BLOCKS),
    );

    for (const verbose of [false, true]) {
      const d = await deltaPlanOf(meta, 2, 3, { verbose, volumeSizeBytes: 256 * MiB });
      assert.deepEqual(
        await allOps(d.plan),
        [
          { kind: 'data', offsetBytes: 10 * BLOCK, lengthBytes: 4 * BLOCK },
          { kind: 'data', offsetBytes: 100 * BLOCK, lengthBytes: 2 * BLOCK },
          { kind: 'unmap', offsetBytes: 2048 * BLOCK, lengthBytes: 4 * BLOCK },
        ],
        `verbose=${verbose}`,
      );
      assert.deepEqual(d.plan.totals, {
        dataBytes: 6 * BLOCK,
        unmapBytes: 4 * BLOCK,
        dataOps: 2,
        unmapOps: 1,
        volumeSizeBytes: 256 * MiB,
        blockSizeBytes: BLOCK,
      });
      assert.deepEqual([d.leftDevId, d.rightDevId], [2, 3]);
      await d.plan.close();
    }

    const f = await fullPlanOf(meta, 2, { volumeSizeBytes: 256 * MiB, mappingSpool: true });
    assert.deepEqual(await allOps(f.plan), [
      { kind: 'data', offsetBytes: 0, lengthBytes: MiB },
      { kind: 'data', offsetBytes: MiB, lengthBytes: MiB },
      { kind: 'data', offsetBytes: 2 * MiB, lengthBytes: MiB },
      { kind: 'data', offsetBytes: 3 * MiB, lengthBytes: MiB },
      { kind: 'data', offsetBytes: 2048 * BLOCK, lengthBytes: MiB },
    ]);
    assert.deepEqual(await f.mappings!.lookup(2050), { dataBlock: 66, runBlocks: 14 });
    await f.plan.close();
    await f.mappings!.close();

    // An unknown id: thin_dump prints an empty superblock and exits 0; the plan says NOT_FOUND.
    await assert.rejects(fullPlanOf(meta, 99), (e: unknown) => e instanceof ThinshipError && e.code === 'NOT_FOUND' && /99/.test(e.message));
  });

  test("a generated pool (60 k mappings): plans and element counts match the generator's bookkeeping", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'thinship-tools-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const pool = await generatePool(dir, { seed: 3, mappings: 60_000 });
    const meta = pool.metadataPath;

    // thin_dump prints as many elements as the generator wrote (thin_dump merges runs; the generator's elements are maximal).
    const counts = new Map<number, number>();
    const sample: Mapping[] = [];
    const tool = spawnTool('thin_dump', [meta]);
    await Promise.all([
      parseThinDump(tool.stdout, {
        onMappings(devId, b) {
          counts.set(devId, (counts.get(devId) ?? 0) + b.length);
          if (devId === pool.a.devId) for (const m of b) if (sample.length < 20_000) sample.push(m);
        },
      }),
      tool.done,
    ]);
    assert.equal(counts.get(pool.a.devId), pool.a.elements);
    assert.equal(counts.get(pool.b.devId), pool.b.elements);

    const fa = await fullPlanOf(meta, pool.a.devId, { volumeSizeBytes: pool.volumeSizeBytes, mappingSpool: true });
    assert.deepEqual(fa.plan.totals, pool.fullA);
    assert.deepEqual(await walkPlan(fa.plan), { dataBytes: pool.fullA.dataBytes, unmapBytes: 0, dataOps: pool.fullA.dataOps, unmapOps: 0 });
    // Every block of the first 20 k mappings is found where thin_dump said it is.
    for (const m of sample) {
      for (let i = 0; i < m.lengthBlocks; i++) {
        const hit = await fa.mappings!.lookup(m.originBlock + i);
        assert.ok(hit && hit.dataBlock === m.dataBlock + i && hit.runBlocks >= m.lengthBlocks - i, `origin ${m.originBlock + i}`);
      }
    }
    await fa.plan.close();
    await fa.mappings!.close();

    const fb = await fullPlanOf(meta, pool.b.devId, { volumeSizeBytes: pool.volumeSizeBytes });
    assert.deepEqual(fb.plan.totals, pool.fullB);
    await fb.plan.close();
    // Without a volume size, a full plan's volume ends with its last mapping.
    const fn = await fullPlanOf(meta, pool.a.devId);
    assert.deepEqual(fn.plan.totals, { ...pool.fullA, volumeSizeBytes: pool.a.mappedEndBytes });
    await fn.plan.close();

    for (const verbose of [false, true]) {
      const d = await deltaPlanOf(meta, pool.a.devId, pool.b.devId, { verbose, volumeSizeBytes: pool.volumeSizeBytes });
      assert.deepEqual(d.plan.totals, pool.delta, `verbose=${verbose}`);
      assert.deepEqual(await walkPlan(d.plan), {
        dataBytes: pool.delta.dataBytes,
        unmapBytes: pool.delta.unmapBytes,
        dataOps: pool.delta.dataOps,
        unmapOps: pool.delta.unmapOps,
      });
      await d.plan.close();
    }
    const dn = await deltaPlanOf(meta, pool.a.devId, pool.b.devId);
    assert.equal(dn.plan.totals.volumeSizeBytes, pool.deltaExtentBytes);
    await dn.plan.close();
  });

  test('a fragmented pool of 2 M mappings plans exactly, in constant memory (child peak RSS < 150 MiB)', { timeout: 600_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'thinship-tools-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const t0 = performance.now();
    const pool = await generatePool(dir, { seed: 11, mappings: 2_000_000 });
    const genS = (performance.now() - t0) / 1000;
    const args: ChildArgs = {
      metadataPath: pool.metadataPath,
      devId: pool.a.devId,
      left: pool.a.devId,
      right: pool.b.devId,
      volumeSizeBytes: pool.volumeSizeBytes,
      spoolDir: dir,
    };
    const r = await runTool(process.execPath, [fileURLToPath(import.meta.url)], { env: { [CHILD_ENV]: JSON.stringify(args) } });
    const res = JSON.parse(r.stdout) as ChildResult;
    t.diagnostic(
      `generate+restore ${genS.toFixed(1)} s; full plan ${(res.fullMs / 1000).toFixed(1)} s (${pool.a.elements} elements), delta plan ${(res.deltaMs / 1000).toFixed(1)} s; child VmHWM ${(res.hwmKiB / 1024).toFixed(1)} MiB; ${res.mappingRecords} mapping records`,
    );
    assert.ok(pool.a.elements >= 2_000_000);
    assert.deepEqual(res.full, pool.fullA);
    assert.deepEqual(res.fullWalk, { dataBytes: pool.fullA.dataBytes, unmapBytes: 0, dataOps: pool.fullA.dataOps, unmapOps: 0 });
    assert.deepEqual(res.delta, pool.delta);
    assert.deepEqual(res.deltaWalk, {
      dataBytes: pool.delta.dataBytes,
      unmapBytes: pool.delta.unmapBytes,
      dataOps: pool.delta.dataOps,
      unmapOps: pool.delta.unmapOps,
    });
    assert.ok(res.hwmKiB < 150 * 1024, `peak RSS ${res.hwmKiB} KiB`);
  });
}
