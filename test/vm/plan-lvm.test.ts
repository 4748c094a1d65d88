/**
 * Real-kernel tier for `thinship plan`: two VM boots (Debian 12 kernel, dm-thin,
 * LVM2 2.03.16, thin-provisioning-tools 0.9.0 under QEMU), see test/vm/README.md.
 *
 * The layouts below are the single source of truth: the guest writes, discards
 * and snapshots exactly these chunks, and the expected plans are computed here
 * from the same lists by a small model of thin mappings (which chunks each
 * snapshot maps, and which were rewritten after the first snapshot).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describeRun, guestDir, readCapture, readLvsRows, readResult, runGuest, vmSkipReason, type CommandCapture, type GuestRun } from './vm-harness.js';

const MiB = 1024 * 1024;
const DEFAULT_MAX_OP_BYTES = MiB;

// ---------------------------------------------------------------- layouts

interface PoolLayout {
  vg: string;
  pool: string;
  lv: string;
  snap1: string;
  snap2: string;
  chunkBytes: number;
  poolSize: string;
  lvSizeBytes: number;
  /** Before snap1 / between snap1 and snap2; tokens as in guest/lib.sh apply_ops. */
  ops1: string[];
  ops2: string[];
}

/** 64 KiB chunks, plain names. Chunk 40 gets a half-chunk discard (stays mapped); 700 is written then discarded. */
const poolA: PoolLayout = {
  vg: 'vg0',
  pool: 'pool',
  lv: 'thin1',
  snap1: 'snap1',
  snap2: 'snap2',
  chunkBytes: 64 * 1024,
  poolSize: '1G',
  lvSizeBytes: 256 * MiB,
  ops1: ['w:0+64', 'w:2048+16', 'w:3000+1', 'w:4095+1'],
  ops2: ['w:10+4', 'w:100+2', 'w:63+2', 'w:3001+1', 'd:2048+4', 'd:4095+1', 'd:20+1', 's:500', 's:30', 'p:40', 'w:700+1', 'd:700+1'],
};

/** 256 KiB chunks, hyphens in VG, pool and LV names (dm names double them). */
const poolB: PoolLayout = {
  vg: 'test-vg',
  pool: 'pool-1',
  lv: 'thin-a',
  snap1: 'snap-a1',
  snap2: 'snap-a2',
  chunkBytes: 256 * 1024,
  poolSize: '512M',
  lvSizeBytes: 128 * MiB,
  ops1: ['w:0+8', 'w:100+3', 'w:511+1'],
  ops2: ['w:2+1', 'w:8+2', 'd:101+1', 's:200', 'p:4', 'd:511+1', 'w:300+5'],
};

/** Small pool for the signal cases. */
const poolS: PoolLayout = {
  vg: 'vg0',
  pool: 'pool',
  lv: 'thin1',
  snap1: 'snap1',
  snap2: 'snap2',
  chunkBytes: 64 * 1024,
  poolSize: '1G',
  lvSizeBytes: 256 * MiB,
  ops1: ['w:0+16', 'w:200+4'],
  ops2: ['w:4+2', 'd:200+1', 'w:300+1'],
};

function layoutEnv(prefix: string, l: PoolLayout): Record<string, string> {
  return {
    [`${prefix}_VG`]: l.vg,
    [`${prefix}_POOL`]: l.pool,
    [`${prefix}_CHUNK`]: `${l.chunkBytes / 1024}k`,
    [`${prefix}_POOL_SIZE`]: l.poolSize,
    [`${prefix}_LV`]: l.lv,
    [`${prefix}_LV_SIZE`]: `${l.lvSizeBytes / MiB}M`,
    [`${prefix}_SNAP1`]: l.snap1,
    [`${prefix}_SNAP2`]: l.snap2,
    [`${prefix}_OPS1`]: l.ops1.join(' '),
    [`${prefix}_OPS2`]: l.ops2.join(' '),
  };
}

// ------------------------------------------------------------------ model

/** chunk -> version of its content; a write gives a chunk a new version (a new pool block after a snapshot). */
type ChunkMap = Map<number, number>;

function applyOps(map: ChunkMap, ops: string[], nextVersion: { v: number }): void {
  for (const op of ops) {
    const m = /^([wd]):(\d+)\+(\d+)$|^([sp]):(\d+)$/.exec(op);
    if (!m) throw new Error(`bad layout op ${op}`);
    if (m[1]) {
      const start = Number(m[2]);
      for (let c = start; c < start + Number(m[3]); c++) {
        if (m[1] === 'w') map.set(c, nextVersion.v++);
        else map.delete(c);
      }
    } else if (m[4] === 's') {
      map.set(Number(m[5]), nextVersion.v++); // a 4 KiB write maps (or copies) the whole chunk
    }
    // 'p': a discard of part of a chunk leaves it mapped and unchanged
  }
}

function snapshots(l: PoolLayout): { snap1: ChunkMap; snap2: ChunkMap } {
  const version = { v: 1 };
  const live: ChunkMap = new Map();
  applyOps(live, l.ops1, version);
  const snap1 = new Map(live);
  applyOps(live, l.ops2, version);
  return { snap1, snap2: new Map(live) };
}

interface Op {
  kind: 'data' | 'unmap';
  offsetBytes: number;
  lengthBytes: number;
}

/** Sorted chunks -> byte ranges with adjacent chunks merged, each split into pieces of at most maxOpBytes. */
function rangesOf(kind: Op['kind'], chunks: number[], chunkBytes: number, maxOpBytes: number): Op[] {
  const ops: Op[] = [];
  const sorted = [...chunks].sort((a, b) => a - b);
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    let offset = sorted[i]! * chunkBytes;
    const end = (sorted[j]! + 1) * chunkBytes;
    while (offset < end) {
      const len = Math.min(maxOpBytes, end - offset);
      ops.push({ kind, offsetBytes: offset, lengthBytes: len });
      offset += len;
    }
    i = j + 1;
  }
  return ops;
}

function byOffset(ops: Op[]): Op[] {
  return [...ops].sort((a, b) => a.offsetBytes - b.offsetBytes);
}

function expectedFull(map: ChunkMap, l: PoolLayout): Op[] {
  return rangesOf('data', [...map.keys()], l.chunkBytes, DEFAULT_MAX_OP_BYTES);
}

function expectedDelta(base: ChunkMap, snap: ChunkMap, l: PoolLayout): Op[] {
  const changed = [...snap.keys()].filter((c) => base.get(c) !== snap.get(c)); // right_only + different
  const gone = [...base.keys()].filter((c) => !snap.has(c)); // left_only
  return byOffset([...rangesOf('data', changed, l.chunkBytes, DEFAULT_MAX_OP_BYTES), ...rangesOf('unmap', gone, l.chunkBytes, DEFAULT_MAX_OP_BYTES)]);
}

/** Chunks mapped in a raw `thin_dump -m --dev-id N` output (checks the model, not the CLI). */
function mappedChunksOf(xml: string): number[] {
  const chunks: number[] = [];
  for (const m of xml.matchAll(/<single_mapping origin_block="(\d+)"/g)) chunks.push(Number(m[1]));
  for (const m of xml.matchAll(/<range_mapping origin_begin="(\d+)" data_begin="\d+" length="(\d+)"/g)) {
    for (let c = Number(m[1]); c < Number(m[1]) + Number(m[2]); c++) chunks.push(c);
  }
  assert.ok(/<device dev_id=/.test(xml), `raw thin_dump output has a device:\n${xml.slice(0, 500)}`);
  return chunks.sort((a, b) => a - b);
}

/** Changed (different + right_only) and gone (left_only) chunks in a raw `thin_delta -m` output. */
function deltaChunksOf(xml: string): { changed: number[]; gone: number[] } {
  const changed: number[] = [];
  const gone: number[] = [];
  for (const m of xml.matchAll(/<(different|right_only|left_only) begin="(\d+)" length="(\d+)"\/>/g)) {
    for (let c = Number(m[2]); c < Number(m[2]) + Number(m[3]); c++) (m[1] === 'left_only' ? gone : changed).push(c);
  }
  assert.ok(/<diff left=/.test(xml), `raw thin_delta output has a diff:\n${xml.slice(0, 500)}`);
  return { changed: changed.sort((a, b) => a - b), gone: gone.sort((a, b) => a - b) };
}

function sortedKeys(m: ChunkMap): number[] {
  return [...m.keys()].sort((a, b) => a - b);
}

// ------------------------------------------------------------ assertions

interface PlanJson {
  mode: 'full' | 'incremental';
  source: { vg: string; lv: string; thinId: number } & Record<string, unknown>;
  base: ({ vg: string; lv: string; thinId: number } & Record<string, unknown>) | null;
  totals: { dataBytes: number; unmapBytes: number; dataOps: number; unmapOps: number; volumeSizeBytes: number; blockSizeBytes: number };
  ops: Op[];
}

function ok(c: CommandCapture): void {
  assert.equal(c.rc, 0, `${c.argv}: exit ${c.rc}\n--- stderr ---\n${c.stderr}`);
}

function released(c: CommandCapture): void {
  assert.equal(c.heldRootAfter, '-', `${c.argv}: the metadata snapshot is still reserved after exit (dmsetup status: ${c.tpoolStatus.trim()})`);
}

function planOf(c: CommandCapture): PlanJson {
  ok(c);
  try {
    return JSON.parse(c.stdout) as PlanJson;
  } catch (e) {
    throw new Error(`${c.argv}: stdout is not one JSON object (${(e as Error).message}):\n${c.stdout.slice(0, 2000)}`, { cause: e });
  }
}

function assertPlan(
  p: PlanJson,
  expected: { mode: PlanJson['mode']; ops: Op[]; l: PoolLayout; sourceLv: string; sourceThinId: number; baseLv?: string; baseThinId?: number },
): void {
  assert.equal(p.mode, expected.mode);
  assert.equal(p.source.vg, expected.l.vg);
  assert.equal(p.source.lv, expected.sourceLv);
  assert.equal(p.source.thinId, expected.sourceThinId, 'source thin id is the one lvs reports');
  if (expected.baseLv === undefined) {
    assert.equal(p.base, null);
  } else {
    assert.ok(p.base, 'an incremental plan names its base');
    assert.equal(p.base.vg, expected.l.vg);
    assert.equal(p.base.lv, expected.baseLv);
    assert.equal(p.base.thinId, expected.baseThinId);
  }
  const sum = (kind: Op['kind']) => expected.ops.filter((o) => o.kind === kind).reduce((s, o) => s + o.lengthBytes, 0);
  const count = (kind: Op['kind']) => expected.ops.filter((o) => o.kind === kind).length;
  assert.deepEqual(p.totals, {
    dataBytes: sum('data'),
    unmapBytes: sum('unmap'),
    dataOps: count('data'),
    unmapOps: count('unmap'),
    volumeSizeBytes: expected.l.lvSizeBytes,
    blockSizeBytes: expected.l.chunkBytes,
  });
  assert.deepEqual(
    p.ops.map((o) => ({ kind: o.kind, offsetBytes: o.offsetBytes, lengthBytes: o.lengthBytes })),
    expected.ops,
  );
}

function lvRow(rows: Record<string, string>[], vg: string, lv: string): Record<string, string> {
  const r = rows.find((x) => x.vg_name === vg && x.lv_name === lv);
  assert.ok(r, `lvs lists ${vg}/${lv}`);
  return r;
}

function thinIdOf(rows: Record<string, string>[], vg: string, lv: string): number {
  const id = Number(lvRow(rows, vg, lv).thin_id);
  assert.ok(Number.isInteger(id) && id > 0, `${vg}/${lv} has a thin id`);
  return id;
}

const BOOT_TIMEOUT_MS = 15 * 60_000;

// ------------------------------------------------------------- boot 1

describe('plan on real LVM thin pools (VM boot 1: plan-basic.sh)', { skip: vmSkipReason('plan-basic') }, () => {
  let run: GuestRun;
  let lvs: Record<string, string>[];
  const cap = (name: string) => readCapture(run.resultsDir, name);
  const A = snapshots(poolA);
  const B = snapshots(poolB);

  before(
    async () => {
      run = await runGuest(join(guestDir, 'plan-basic.sh'), {
        disks: ['4G', '2G'],
        env: { ...layoutEnv('A', poolA), ...layoutEnv('B', poolB) },
        timeoutSec: 600,
      });
      process.stderr.write(
        `[vm] plan-basic: wall ${(run.wallMs / 1000).toFixed(1)} s, boot ${run.bootSec} s, script end at ${run.scriptEndSec} s guest uptime\n`,
      );
      assert.equal(run.exitCode, 0, `the guest scenario failed before or between the plans\n${describeRun(run)}`);
      lvs = readLvsRows(run.resultsDir, 'lvs-before.json');
    },
    { timeout: BOOT_TIMEOUT_MS },
  );

  test('the model agrees with the kernel: raw thin_dump / thin_delta of the same snapshots', () => {
    for (const [l, m] of [
      [poolA, A],
      [poolB, B],
    ] as const) {
      const dumped = (snap: string) => mappedChunksOf(readResult(run.resultsDir, `raw-${l.vg}-dump-${snap}.xml`));
      assert.deepEqual(dumped(l.snap1), sortedKeys(m.snap1), `${l.vg}/${l.snap1} mappings`);
      assert.deepEqual(dumped(l.snap2), sortedKeys(m.snap2), `${l.vg}/${l.snap2} mappings`);
      const delta = deltaChunksOf(readResult(run.resultsDir, `raw-${l.vg}-delta.xml`));
      assert.deepEqual(
        delta.changed,
        [...m.snap2.keys()].filter((c) => m.snap1.get(c) !== m.snap2.get(c)).sort((a, b) => a - b),
        `${l.vg} different + right_only`,
      );
      assert.deepEqual(
        delta.gone,
        [...m.snap1.keys()].filter((c) => !m.snap2.has(c)).sort((a, b) => a - b),
        `${l.vg} left_only`,
      );
    }
    // and the layouts exercise what they should: splits, unmaps, data
    const delta = expectedDelta(A.snap1, A.snap2, poolA);
    assert.ok(delta.some((o) => o.kind === 'unmap') && delta.some((o) => o.kind === 'data'));
    assert.ok(
      expectedFull(A.snap1, poolA).some((o) => o.lengthBytes === MiB),
      'a range longer than 1 MiB gets split',
    );
  });

  test('full plan of vg0/snap1: every mapped chunk, coalesced, split at 1 MiB (default, native and thin-tools readers)', () => {
    for (const name of ['a-full-snap1', 'a-full-snap1-native', 'a-full-snap1-tools']) {
      const c = cap(name);
      assertPlan(planOf(c), { mode: 'full', ops: expectedFull(A.snap1, poolA), l: poolA, sourceLv: 'snap1', sourceThinId: thinIdOf(lvs, 'vg0', 'snap1') });
      released(c);
    }
  });

  test('incremental plan vg0/snap1 -> vg0/snap2: rewritten and new chunks as data, discarded as unmap (default, native and thin-tools readers)', () => {
    for (const name of ['a-incr', 'a-incr-native', 'a-incr-tools']) {
      const c = cap(name);
      assertPlan(planOf(c), {
        mode: 'incremental',
        ops: expectedDelta(A.snap1, A.snap2, poolA),
        l: poolA,
        sourceLv: 'snap2',
        sourceThinId: thinIdOf(lvs, 'vg0', 'snap2'),
        baseLv: 'snap1',
        baseThinId: thinIdOf(lvs, 'vg0', 'snap1'),
      });
      released(c);
    }
  });

  test('incremental plan without --json prints the same totals for people', () => {
    const c = cap('a-incr-text');
    ok(c);
    const totals = planOf(cap('a-incr')).totals;
    assert.match(c.stdout, /snap2/);
    assert.ok(c.stdout.includes(String(totals.dataBytes)), `text output names the data bytes ${totals.dataBytes}:\n${c.stdout}`);
    assert.ok(c.stdout.includes(String(totals.unmapBytes)), `text output names the unmap bytes ${totals.unmapBytes}:\n${c.stdout}`);
    released(c);
  });

  test('a live writable LV is refused without --allow-live', () => {
    const c = cap('a-live-refused');
    assert.equal(c.rc, 4, `exit status for a live source (LIVE_SOURCE)\n${c.stderr}`);
    assert.match(c.stderr, /thin1/);
    assert.match(c.stderr, /--allow-live/);
    assert.equal(c.stdout, '');
    released(c);
  });

  test('a live LV with --allow-live is planned as it is now (same mappings as snap2, holes where snap1 had data)', () => {
    const c = cap('a-live-allowed');
    assertPlan(planOf(c), { mode: 'full', ops: expectedFull(A.snap2, poolA), l: poolA, sourceLv: 'thin1', sourceThinId: thinIdOf(lvs, 'vg0', 'thin1') });
    released(c);
  });

  test('errors from real LVM: missing LV, base newer than snapshot, base in another pool', () => {
    const missing = cap('a-missing');
    assert.equal(missing.rc, 3, `missing LV exits NOT_FOUND\n${missing.stderr}`);
    assert.match(missing.stderr, /vg0\/no-such-lv/);
    const reversed = cap('a-reversed');
    assert.equal(reversed.rc, 4, `base newer than snapshot exits INVALID_SOURCE\n${reversed.stderr}`);
    assert.match(reversed.stderr, /older/);
    const cross = cap('cross-pool');
    assert.equal(cross.rc, 4, `base in another pool exits INVALID_SOURCE\n${cross.stderr}`);
    assert.match(cross.stderr, /pool/);
    for (const c of [missing, reversed, cross]) {
      assert.equal(c.stdout, '');
      released(c);
    }
  });

  test('hyphenated names and 256 KiB chunks: full plan of test-vg/snap-a1', () => {
    const c = cap('b-full-snap1');
    assertPlan(planOf(c), {
      mode: 'full',
      ops: expectedFull(B.snap1, poolB),
      l: poolB,
      sourceLv: 'snap-a1',
      sourceThinId: thinIdOf(lvs, 'test-vg', 'snap-a1'),
    });
    released(c);
  });

  test('hyphenated names and 256 KiB chunks: incremental /dev/test-vg/snap-a1 -> /dev/test-vg/snap-a2 (default and thin-tools readers)', () => {
    for (const name of ['b-incr', 'b-incr-tools']) {
      const c = cap(name);
      assertPlan(planOf(c), {
        mode: 'incremental',
        ops: expectedDelta(B.snap1, B.snap2, poolB),
        l: poolB,
        sourceLv: 'snap-a2',
        sourceThinId: thinIdOf(lvs, 'test-vg', 'snap-a2'),
        baseLv: 'snap-a1',
        baseThinId: thinIdOf(lvs, 'test-vg', 'snap-a1'),
      });
      released(c);
    }
  });

  test('snapshots stay inactive with the activation-skip flag: plan does not activate them', () => {
    const after = readLvsRows(run.resultsDir, 'lvs-after.json');
    for (const [vg, lv] of [
      ['vg0', 'snap1'],
      ['vg0', 'snap2'],
      ['test-vg', 'snap-a1'],
      ['test-vg', 'snap-a2'],
    ] as const) {
      for (const rows of [lvs, after]) {
        const attr = lvRow(rows, vg, lv).lv_attr!;
        assert.equal(attr[9], 'k', `${vg}/${lv} has the activation-skip flag (attr ${attr})`);
        assert.equal(attr[4], '-', `${vg}/${lv} is inactive (attr ${attr})`);
      }
    }
    const dm = readResult(run.resultsDir, 'dev-mapper-after.txt').split(/\s+/);
    assert.ok(!dm.includes('vg0-snap1') && !dm.includes('test--vg-snap--a1'), `no device for the snapshots: ${dm.join(' ')}`);
    assert.ok(dm.includes('test--vg-pool--1-tpool'), `hyphens are doubled in dm names: ${dm.join(' ')}`);
  });

  test('after all plans: nothing reserved on either pool, no pool lock left', () => {
    for (const f of ['tpool-a-final.txt', 'tpool-b-final.txt']) {
      const status = readResult(run.resultsDir, f);
      assert.equal(status.trim().split(/\s+/)[6], '-', `${f}: ${status}`);
    }
    assert.equal(readResult(run.resultsDir, 'locks-after.txt').trim(), '');
  });
});

// ------------------------------------------------------------- boot 2

describe('plan releases the metadata snapshot on signals and crashes (VM boot 2: plan-signals.sh)', { skip: vmSkipReason('plan-signals') }, () => {
  let run: GuestRun;
  let lvs: Record<string, string>[];
  const S = snapshots(poolS);
  const cap = (name: string) => readCapture(run.resultsDir, name);
  const heldBefore = (name: string) => {
    const held = readResult(run.resultsDir, `${name}/held-before`).trim();
    assert.notEqual(held, 'no-child', `${name}: the plan never started its thin tool, so no signal was sent:\n${readCapture(run.resultsDir, name).stderr}`);
    return held;
  };
  const toolsAfter = (name: string) => readResult(run.resultsDir, `${name}/tools-after`).trim();

  before(
    async () => {
      run = await runGuest(join(guestDir, 'plan-signals.sh'), { disks: ['4G'], env: { ...layoutEnv('A', poolS), SLOW_SEC: '4' }, timeoutSec: 600 });
      process.stderr.write(
        `[vm] plan-signals: wall ${(run.wallMs / 1000).toFixed(1)} s, boot ${run.bootSec} s, script end at ${run.scriptEndSec} s guest uptime\n`,
      );
      assert.equal(run.exitCode, 0, `the guest scenario failed\n${describeRun(run)}`);
      lvs = readLvsRows(run.resultsDir, 'lvs.json');
    },
    { timeout: BOOT_TIMEOUT_MS },
  );

  test('SIGTERM while thin_dump runs: exit 143, nothing printed, reservation released, thin_dump stopped', () => {
    const c = cap('sigterm');
    assert.match(heldBefore('sigterm'), /^\d+$/, 'the reservation was held when the signal was sent');
    assert.equal(c.rc, 128 + 15, `exit status after SIGTERM\n${c.stderr}`);
    assert.equal(c.stdout, '', 'no partial plan on stdout');
    released(c);
    assert.equal(toolsAfter('sigterm'), '', 'thin_dump does not outlive the plan');
  });

  test('SIGINT while thin_delta runs: exit 130, reservation released, thin_delta stopped', () => {
    const c = cap('sigint');
    assert.match(heldBefore('sigint'), /^\d+$/);
    assert.equal(c.rc, 128 + 2, `exit status after SIGINT\n${c.stderr}`);
    assert.equal(c.stdout, '');
    released(c);
    assert.equal(toolsAfter('sigint'), '', 'thin_delta does not outlive the plan');
  });

  test('SIGKILL to the thin_dump child: the plan fails naming thin_dump, reservation released', () => {
    const c = cap('kill-child');
    assert.match(heldBefore('kill-child'), /^\d+$/);
    assert.notEqual(c.rc, 0);
    assert.equal(c.rc, 5, `a killed thin tool exits TOOL_KILLED\n${c.stderr}`);
    assert.match(c.stderr, /thin_dump/);
    assert.match(c.stderr, /SIGKILL|killed/i);
    assert.equal(c.stdout, '');
    released(c);
  });

  test('SIGKILL to the plan itself leaves the reservation held; the next plan releases it, says so, and succeeds', () => {
    const crash = readCapture(run.resultsDir, 'crash');
    assert.equal(crash.rc, 128 + 9, 'the plan died of SIGKILL');
    assert.match(crash.heldRootAfter, /^\d+$/, `a crashed plan leaves the reservation (this is what the next run must clean up): ${crash.tpoolStatus}`);

    const recover = cap('crash-recover');
    assert.match(recover.stderr, /releas\w* a stale metadata snapshot reservation/i, `stderr says it released a stale reservation:\n${recover.stderr}`);
    assert.match(recover.stderr, /vg0\/pool/);
    assertPlan(planOf(recover), { mode: 'full', ops: expectedFull(S.snap1, poolS), l: poolS, sourceLv: 'snap1', sourceThinId: thinIdOf(lvs, 'vg0', 'snap1') });
    released(recover);

    const next = cap('after-recover');
    assert.doesNotMatch(next.stderr, /stale/i, 'nothing stale is left for the run after');
    assertPlan(planOf(next), {
      mode: 'incremental',
      ops: expectedDelta(S.snap1, S.snap2, poolS),
      l: poolS,
      sourceLv: 'snap2',
      sourceThinId: thinIdOf(lvs, 'vg0', 'snap2'),
      baseLv: 'snap1',
      baseThinId: thinIdOf(lvs, 'vg0', 'snap1'),
    });
    released(next);
    assert.equal(readResult(run.resultsDir, 'locks-after.txt').trim(), '', 'no pool lock left behind');
  });
});
