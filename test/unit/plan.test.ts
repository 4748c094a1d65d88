import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  buildDeltaPlan,
  buildFullPlan,
  checkMaxOpBytes,
  Coalescer,
  DEFAULT_MAX_OP_BYTES,
  MAX_OP_BYTES_LIMIT,
  PLAN_BATCH_OPS,
  planOps,
  splitRun,
  type PlanRange,
  type RunKind,
} from '../../src/thin/plan.js';
import { MappingSpool, RecordSpool } from '../../src/thin/spool.js';
import type { PlanOp } from '../../src/thin/model.js';
import { ThinshipError } from '../../src/errors.js';
import { repoRoot } from '../helpers/paths.js';
import { fixtureOutput } from '../helpers/metadata-gen.js';
import { allOps } from '../helpers/plan-ops.js';

const sample = (name: string): string => fixtureOutput(join(repoRoot, 'test/fixtures/samples', name));
const input = (text: string): Readable => Readable.from([Buffer.from(text)]);
const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB; // the samples' 128 sectors

const op = (kind: RunKind, offsetBytes: number, lengthBytes: number): PlanOp => ({ kind, offsetBytes, lengthBytes });
const isCode =
  (code: string, ...words: RegExp[]) =>
  (e: unknown) => {
    assert.ok(e instanceof ThinshipError, String(e));
    assert.equal(e.code, code, e.message);
    for (const w of words) assert.match(e.message, w);
    return true;
  };

// ---------------------------------------------------------------------------
// Pure pieces

test('Coalescer merges adjacent ranges of the same kind only', () => {
  const cases: Array<[string, Array<[RunKind | 'skip', number, number]>, Array<[RunKind, number, number]>]> = [
    [
      'adjacent data merge',
      [
        ['data', 0, 1],
        ['data', 1, 2],
        ['data', 3, 1],
      ],
      [['data', 0, 4]],
    ],
    [
      'a gap separates',
      [
        ['data', 0, 1],
        ['data', 2, 1],
      ],
      [
        ['data', 0, 1],
        ['data', 2, 1],
      ],
    ],
    [
      'kinds do not merge',
      [
        ['data', 0, 2],
        ['unmap', 2, 2],
        ['data', 4, 1],
      ],
      [
        ['data', 0, 2],
        ['unmap', 2, 2],
        ['data', 4, 1],
      ],
    ],
    [
      'a skipped (same) range separates',
      [
        ['data', 0, 2],
        ['skip', 2, 3],
        ['data', 5, 1],
      ],
      [
        ['data', 0, 2],
        ['data', 5, 1],
      ],
    ],
    [
      'unmaps merge',
      [
        ['unmap', 10, 1],
        ['unmap', 11, 1],
      ],
      [['unmap', 10, 2]],
    ],
    [
      'zero-length is ignored',
      [
        ['data', 0, 1],
        ['data', 1, 0],
        ['data', 1, 1],
      ],
      [['data', 0, 2]],
    ],
    ['nothing', [], []],
  ];
  for (const [what, input, want] of cases) {
    const got: Array<[RunKind, number, number]> = [];
    const c = new Coalescer((k, b, l) => got.push([k, b, l]));
    for (const [k, b, l] of input)
      if (k === 'skip') c.skip(b, l);
      else c.push(k, b, l);
    c.finish();
    assert.deepEqual(got, want, what);
  }
});

test('Coalescer refuses ranges out of order or overlapping', () => {
  const c = new Coalescer(() => undefined);
  c.push('data', 10, 5);
  assert.throws(() => c.push('data', 12, 1), isCode('BAD_METADATA', /block 12/, /ends at block 15/));
  const d = new Coalescer(() => undefined);
  d.skip(0, 10);
  assert.throws(() => d.push('unmap', 9, 1), isCode('BAD_METADATA', /block 9/));
});

test('splitRun splits at maxOpBytes from the run start', () => {
  const cases: Array<[number, number, number, PlanOp[]]> = [
    [0, 3 * MiB, MiB, [op('data', 0, MiB), op('data', MiB, MiB), op('data', 2 * MiB, MiB)]],
    [BLOCK, MiB + 2 * BLOCK, MiB, [op('data', BLOCK, MiB), op('data', BLOCK + MiB, 2 * BLOCK)]],
    [5 * BLOCK, BLOCK, MiB, [op('data', 5 * BLOCK, BLOCK)]],
    [0, 1536, 512, [op('data', 0, 512), op('data', 512, 512), op('data', 1024, 512)]],
  ];
  for (const [off, len, max, want] of cases) {
    const out: PlanOp[] = [];
    splitRun('data', off, len, max, out);
    assert.deepEqual(out, want);
  }
});

test('maxOpBytes must be a positive multiple of 512 up to the limit', () => {
  assert.equal(checkMaxOpBytes(undefined), DEFAULT_MAX_OP_BYTES);
  assert.equal(DEFAULT_MAX_OP_BYTES, MiB);
  assert.equal(checkMaxOpBytes(512), 512);
  assert.equal(checkMaxOpBytes(MAX_OP_BYTES_LIMIT), MAX_OP_BYTES_LIMIT);
  for (const bad of [0, -512, 1000, 512.5, MAX_OP_BYTES_LIMIT + 512, Number.NaN]) {
    assert.throws(() => checkMaxOpBytes(bad), isCode('USAGE', /maxOpBytes/), String(bad));
  }
});

test('planOps: unit conversion, coalescing, splitting and totals', () => {
  const ranges: PlanRange[] = [
    { kind: 'data', beginBlock: 10, lengthBlocks: 4 },
    { kind: 'data', beginBlock: 14, lengthBlocks: 20 }, // adjacent: one run of 24 blocks = 1.5 MiB
    { kind: 'unmap', beginBlock: 40, lengthBlocks: 1 },
  ];
  const r = planOps(ranges, { blockSizeBytes: BLOCK });
  assert.deepEqual(r.ops, [op('data', 10 * BLOCK, MiB), op('data', 10 * BLOCK + MiB, 8 * BLOCK), op('unmap', 40 * BLOCK, BLOCK)]);
  assert.deepEqual(r.totals, { dataBytes: 24 * BLOCK, unmapBytes: BLOCK, dataOps: 2, unmapOps: 1, volumeSizeBytes: 41 * BLOCK, blockSizeBytes: BLOCK });
  // A 1 GiB block size and sector-sized blocks convert the same way.
  assert.deepEqual(planOps([{ kind: 'data', beginBlock: 3, lengthBlocks: 1 }], { blockSizeBytes: 1024 * MiB, maxOpBytes: MAX_OP_BYTES_LIMIT }).ops, [
    op('data', 3 * 1024 * MiB, 1024 * MiB),
  ]);
  assert.deepEqual(planOps([{ kind: 'data', beginBlock: 3, lengthBlocks: 2 }], { blockSizeBytes: 512, maxOpBytes: 512 }).ops, [
    op('data', 1536, 512),
    op('data', 2048, 512),
  ]);
});

test('planOps: a volume size is enforced (beyond is BAD_METADATA, a last partial block is clipped)', () => {
  const within = planOps([{ kind: 'data', beginBlock: 2, lengthBlocks: 2 }], { blockSizeBytes: BLOCK, volumeSizeBytes: 4 * BLOCK });
  assert.deepEqual(within.ops, [op('data', 2 * BLOCK, 2 * BLOCK)]);
  assert.equal(within.totals.volumeSizeBytes, 4 * BLOCK);
  const clipped = planOps([{ kind: 'data', beginBlock: 2, lengthBlocks: 2 }], { blockSizeBytes: BLOCK, volumeSizeBytes: 3 * BLOCK + 4096 });
  assert.deepEqual(clipped.ops, [op('data', 2 * BLOCK, BLOCK + 4096)]);
  assert.equal(clipped.totals.dataBytes, BLOCK + 4096);
  assert.throws(
    () => planOps([{ kind: 'unmap', beginBlock: 4, lengthBlocks: 1 }], { blockSizeBytes: BLOCK, volumeSizeBytes: 4 * BLOCK }),
    isCode('BAD_METADATA', /unmap range at block 4/, /beyond the end of the volume \(262144 bytes\)/),
  );
  assert.throws(() => planOps([], { blockSizeBytes: BLOCK, volumeSizeBytes: -1 }), isCode('USAGE', /volumeSizeBytes/));
});

// ---------------------------------------------------------------------------
// Plans from the recorded samples

test('delta plan of the recorded scenario: data 10..13 and 100..101, unmap 2048..2051 (plain and verbose)', async () => {
  for (const name of ['thin_delta.xml', 'thin_delta-verbose.xml']) {
    const r = await buildDeltaPlan(input(sample(name)));
    try {
      assert.deepEqual(
        await allOps(r.plan),
        [op('data', 10 * BLOCK, 4 * BLOCK), op('data', 100 * BLOCK, 2 * BLOCK), op('unmap', 2048 * BLOCK, 4 * BLOCK)],
        name,
      );
      // No volume size given: the end of the last range of any kind (same 2052..2063).
      assert.deepEqual(r.plan.totals, {
        dataBytes: 6 * BLOCK,
        unmapBytes: 4 * BLOCK,
        dataOps: 2,
        unmapOps: 1,
        volumeSizeBytes: 2064 * BLOCK,
        blockSizeBytes: BLOCK,
      });
      assert.deepEqual([r.leftDevId, r.rightDevId], [2, 3]);
      assert.equal(r.superblock.dataBlockSizeSectors, 128);
    } finally {
      await r.plan.close();
    }
  }
});

test('delta plan with a small maxOpBytes and the lvs volume size', async () => {
  const r = await buildDeltaPlan(input(sample('thin_delta.xml')), { maxOpBytes: 128 * KiB, volumeSizeBytes: 256 * MiB });
  assert.deepEqual(await allOps(r.plan), [
    op('data', 10 * BLOCK, 2 * BLOCK),
    op('data', 12 * BLOCK, 2 * BLOCK),
    op('data', 100 * BLOCK, 2 * BLOCK),
    op('unmap', 2048 * BLOCK, 2 * BLOCK),
    op('unmap', 2050 * BLOCK, 2 * BLOCK),
  ]);
  assert.deepEqual(r.plan.totals, { dataBytes: 6 * BLOCK, unmapBytes: 4 * BLOCK, dataOps: 3, unmapOps: 2, volumeSizeBytes: 256 * MiB, blockSizeBytes: BLOCK });
  await r.plan.close();
  await assert.rejects(buildDeltaPlan(input(sample('thin_delta.xml')), { volumeSizeBytes: 2048 * BLOCK }), isCode('BAD_METADATA', /block 2048/));
});

test('adjacent different and right_only ranges merge into one data op; same-only delta is empty', async () => {
  const doc = [
    '<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="0">',
    '<diff left="1" right="2">',
    '<different begin="0" length="2"/>',
    '<right_only begin="2" length="1"/>',
    '<different begin="3" length="1"/>',
    '<left_only begin="4" length="1"/>',
    '<left_only begin="5" length="2"/>',
    '</diff>',
    '</superblock>',
    '',
  ].join('\n');
  const r = await buildDeltaPlan(input(doc));
  assert.deepEqual(await allOps(r.plan), [op('data', 0, 4 * BLOCK), op('unmap', 4 * BLOCK, 3 * BLOCK)]);
  await r.plan.close();
  const same = await buildDeltaPlan(input(sample('extras/thin_delta-same.txt')));
  assert.deepEqual(await allOps(same.plan), []);
  assert.deepEqual(same.plan.totals, { dataBytes: 0, unmapBytes: 0, dataOps: 0, unmapOps: 0, volumeSizeBytes: 8 * BLOCK, blockSizeBytes: BLOCK });
  await same.plan.close();
});

test('full plan of snap2 from the whole-pool dump: mapped ranges coalesced and split at 1 MiB', async () => {
  const r = await buildFullPlan(input(sample('thin_dump-all.xml')), { devId: 3 });
  try {
    // 0..9, 10..13, 14..63 are adjacent: one 4 MiB run -> 4 ops.
    assert.deepEqual(await allOps(r.plan), [
      op('data', 0, MiB),
      op('data', MiB, MiB),
      op('data', 2 * MiB, MiB),
      op('data', 3 * MiB, MiB),
      op('data', 100 * BLOCK, 2 * BLOCK),
      op('data', 2052 * BLOCK, 12 * BLOCK),
    ]);
    assert.deepEqual(r.plan.totals, { dataBytes: 78 * BLOCK, unmapBytes: 0, dataOps: 6, unmapOps: 0, volumeSizeBytes: 2064 * BLOCK, blockSizeBytes: BLOCK });
    assert.equal(r.device.devId, 3);
    assert.equal(r.device.mappedBlocks, 78);
    assert.equal(r.mappings, undefined);
    // Iterable again until closed.
    assert.equal((await allOps(r.plan)).length, 6);
  } finally {
    await r.plan.close();
    await r.plan.close(); // idempotent
  }
  await assert.rejects(
    async () => {
      for await (const b of r.plan.batches()) void b;
    },
    isCode('INTERNAL', /after close/),
  );
});

test('full plan of a device missing from the dump is NOT_FOUND naming the id', async () => {
  await assert.rejects(buildFullPlan(input(sample('thin_dump-all.xml')), { devId: 99 }), isCode('NOT_FOUND', /thin device id 99/, /devices found: 1, 2, 3/));
  await assert.rejects(buildFullPlan(input(sample('extras/thin_dump-unknown-id.txt')), { devId: 99 }), isCode('NOT_FOUND', /99/, /printed no device/));
  await assert.rejects(buildFullPlan(input(sample('thin_dump-all.xml')), { devId: 3, maxOpBytes: 1000 }), isCode('USAGE'));
});

test('mapping spool of snap2: lookups give the data block and the run length', async () => {
  const r = await buildFullPlan(input(sample('thin_dump-snap2.xml')), { devId: 3, mappingSpool: true });
  await r.plan.close();
  const ms = r.mappings!;
  try {
    const cases: Array<[number, [number, number] | undefined]> = [
      [0, [0, 10]],
      [5, [5, 5]],
      [9, [9, 1]],
      [10, [80, 4]],
      [13, [83, 1]],
      [14, [14, 50]],
      [63, [63, 1]],
      [64, undefined],
      [99, undefined],
      [100, [84, 2]],
      [101, [85, 1]],
      [2051, undefined],
      [2052, [68, 12]],
      [2063, [79, 1]],
      [2064, undefined],
      [1e12, undefined],
    ];
    for (const [origin, want] of cases) {
      const got = await ms.lookup(origin);
      assert.deepEqual(got, want === undefined ? undefined : { dataBlock: want[0], runBlocks: want[1] }, `origin ${origin}`);
    }
  } finally {
    await ms.close();
    await ms.close();
  }
});

// ---------------------------------------------------------------------------
// Spools

test('record spool: buffered writes, reads and chunks; the temp file is gone from the directory at once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-spooltest-'));
  try {
    const s = await RecordSpool.create(2, { dir, bufferBytes: 64 }); // 4 records per buffer: many rotations
    assert.deepEqual(await readdir(dir), [], 'the spool file and its private directory are unlinked once open');
    for (let i = 0; i < 1000; i++) {
      s.append2(i, -i * 3);
      if (s.needsDrain) await s.drain();
    }
    await s.finish();
    const buf = new Float64Array(10);
    assert.equal(await s.read(995, buf), 5);
    assert.deepEqual([...buf.subarray(0, 4)], [995, -2985, 996, -2988]);
    let n = 0;
    for await (const c of s.chunks(7)) {
      for (let i = 0; i < c.length; i += 2, n++) assert.deepEqual([c[i], c[i + 1]], [n, -n * 3]);
    }
    assert.equal(n, 1000);
    await s.close();
    await s.close();
    await assert.rejects(s.read(0, buf), isCode('INTERNAL', /closed/));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('mapping spool: merges continuous mappings, refuses disorder, finds blocks across many pages', async () => {
  const bad = await MappingSpool.create();
  bad.add(10, 0, 5);
  assert.throws(() => bad.add(12, 100, 1), isCode('BAD_METADATA', /origin block 12/));
  await bad.close();

  const ms = await MappingSpool.create({ bufferBytes: 1000 });
  // Mapping i: origin 3i, data 7i (length 1 or 2), every 10th continues its predecessor in both origin and data.
  const truth = new Map<number, number>();
  let o = 0,
    d = 1;
  for (let i = 0; i < 5000; i++) {
    const len = i % 3 === 0 ? 2 : 1;
    if (i % 10 !== 0) {
      o += 1;
      d += 5;
    }
    ms.add(o, d, len);
    for (let k = 0; k < len; k++) truth.set(o + k, d + k);
    if (ms.needsDrain) await ms.drain();
    o += len;
    d += len;
  }
  await ms.finish();
  assert.ok(ms.records < 5000, 'continuing mappings were merged');
  const maxOrigin = o + 5;
  let s = 12345;
  for (let i = 0; i < 3000; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const q = s % maxOrigin;
    const got = await ms.lookup(q);
    const want = truth.get(q);
    if (want === undefined) {
      assert.equal(got, undefined, `origin ${q}`);
      continue;
    }
    let run = 1;
    while (truth.get(q + run) === want + run) run++;
    assert.deepEqual(got, { dataBlock: want, runBlocks: run }, `origin ${q}`);
  }
  await ms.close();
});

// ---------------------------------------------------------------------------
// Property: random mapping sets -> plan ops -> the mapped set again.

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s / 4294967296;
  };
}

/** Marks [offset, offset+len) in a set of 512-byte sectors. */
function markSectors(set: Set<number>, offsetBytes: number, lengthBytes: number): void {
  for (let b = offsetBytes; b < offsetBytes + lengthBytes; b += 512) set.add(b / 512);
}

function checkOps(ops: PlanOp[], maxOpBytes: number): void {
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!;
    assert.ok(o.lengthBytes > 0 && o.lengthBytes <= maxOpBytes && o.lengthBytes % 512 === 0, JSON.stringify(o));
    if (i > 0) assert.ok(ops[i - 1]!.offsetBytes + ops[i - 1]!.lengthBytes <= o.offsetBytes, 'ops in increasing offset order, not overlapping');
  }
}

test('property: full plans of random mapping sets cover exactly the mapped blocks', async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const sectors = [1, 8, 128, 256][Math.floor(r() * 4)]!;
    const bs = sectors * 512;
    const maxOpBytes = 512 * (1 + Math.floor(r() * 600));
    const want = new Set<number>();
    const lines = [`<superblock uuid="" time="1" transaction="1" version="2" data_block_size="${sectors}" nr_data_blocks="0">`];
    const maps: string[] = [];
    let o = Math.floor(r() * 4),
      mapped = 0;
    for (let i = 0, n = Math.floor(r() * 400); i < n; i++) {
      const len = r() < 0.6 ? 1 : 1 + Math.floor(r() * 30);
      maps.push(
        len === 1
          ? `<single_mapping origin_block="${o}" data_block="${Math.floor(r() * 1e6)}" time="0"/>`
          : `<range_mapping origin_begin="${o}" data_begin="${Math.floor(r() * 1e6)}" length="${len}" time="1"/>`,
      );
      markSectors(want, o * bs, len * bs);
      mapped += len;
      o += len + (r() < 0.4 ? 0 : Math.floor(r() * 6));
    }
    lines.push(`<device dev_id="4" mapped_blocks="${mapped}" transaction="0" creation_time="0" snap_time="0">`, ...maps, '</device>', '</superblock>', '');
    const res = await buildFullPlan(input(lines.join('\n')), { devId: 4, maxOpBytes });
    const ops = await allOps(res.plan);
    await res.plan.close();
    checkOps(ops, maxOpBytes);
    const got = new Set<number>();
    for (const x of ops) {
      assert.equal(x.kind, 'data');
      markSectors(got, x.offsetBytes, x.lengthBytes);
    }
    assert.deepEqual(got, want, `seed ${seed}`);
    assert.equal(res.plan.totals.dataBytes, want.size * 512);
    assert.equal(res.plan.totals.dataOps, ops.length);
  }
});

test('property: delta plans of random block maps send exactly the changed blocks and unmap exactly the removed ones', async () => {
  const kindNames = ['same', 'different', 'left_only', 'right_only'] as const;
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const nBlocks = Math.floor(r() * 600);
    // Per block: 0 unmapped in both, else one of the four delta kinds.
    const kinds: number[] = [];
    for (let i = 0; i < nBlocks; i++) kinds.push(r() < 0.3 ? -1 : Math.floor(r() * 4));
    const verbose = r() < 0.5;
    const body: string[] = [];
    // Emit runs of equal kind, randomly cut into several adjacent elements (as the tool may).
    for (let i = 0; i < nBlocks;) {
      const k = kinds[i]!;
      let j = i;
      while (j < nBlocks && kinds[j] === k) j++;
      if (k >= 0) {
        for (let b = i; b < j;) {
          const len = Math.min(j - b, 1 + Math.floor(r() * 5));
          const name = kindNames[k]!;
          if (verbose) {
            const data = name === 'different' ? `left_data_begin="${b}" right_data_begin="${b + 9999}"` : `data_begin="${b}"`;
            body.push(`<${name}>`, `<range begin="${b}" ${data} length="${len}"/>`, `</${name}>`);
          } else {
            body.push(`<${name} begin="${b}" length="${len}"/>`);
          }
          b += len;
        }
      }
      i = j;
    }
    const doc = [
      '<superblock uuid="" time="1" transaction="1" data_block_size="8" nr_data_blocks="0">',
      '<diff left="1" right="2">',
      ...body,
      '</diff>',
      '</superblock>',
      '',
    ].join('\n');
    const maxOpBytes = 512 * (1 + Math.floor(r() * 40));
    const res = await buildDeltaPlan(input(doc), { maxOpBytes, volumeSizeBytes: nBlocks * 4096 });
    const ops = await allOps(res.plan);
    await res.plan.close();
    checkOps(ops, maxOpBytes);
    const wantData = new Set<number>(),
      wantUnmap = new Set<number>(),
      gotData = new Set<number>(),
      gotUnmap = new Set<number>();
    kinds.forEach((k, i) => {
      if (k === 1 || k === 3) markSectors(wantData, i * 4096, 4096);
      if (k === 2) markSectors(wantUnmap, i * 4096, 4096);
    });
    for (const x of ops) markSectors(x.kind === 'data' ? gotData : gotUnmap, x.offsetBytes, x.lengthBytes);
    assert.deepEqual(gotData, wantData, `seed ${seed} data`);
    assert.deepEqual(gotUnmap, wantUnmap, `seed ${seed} unmap`);
    // Coalesced: no two consecutive ops of one kind touch unless the first is a full maxOpBytes piece.
    for (let i = 1; i < ops.length; i++) {
      const a = ops[i - 1]!,
        b = ops[i]!;
      if (a.kind === b.kind && a.offsetBytes + a.lengthBytes === b.offsetBytes) assert.equal(a.lengthBytes, maxOpBytes, 'adjacent ranges were not coalesced');
    }
  }
});

test('plans of more than one batch come in order, in batches of PLAN_BATCH_OPS', async () => {
  // One 64 KiB block split at 512 bytes: 128 ops per block; 100 blocks -> 12800 ops.
  const doc = [
    '<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="0">',
    '<device dev_id="1" mapped_blocks="100" transaction="0" creation_time="0" snap_time="0">',
    '<range_mapping origin_begin="0" data_begin="0" length="100" time="0"/>',
    '</device>',
    '</superblock>',
    '',
  ].join('\n');
  const r = await buildFullPlan(input(doc), { devId: 1, maxOpBytes: 512 });
  const sizes: number[] = [];
  let next = 0;
  for await (const b of r.plan.batches()) {
    sizes.push(b.length);
    for (const o of b) {
      assert.equal(o.offsetBytes, next);
      next += o.lengthBytes;
    }
  }
  assert.deepEqual(sizes, [PLAN_BATCH_OPS, PLAN_BATCH_OPS, PLAN_BATCH_OPS, 12800 - 3 * PLAN_BATCH_OPS]);
  assert.equal(r.plan.totals.dataOps, 12800);
  await r.plan.close();
});

test('a malformed dump leaves no spool behind and reports the parser error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-spooltest-'));
  try {
    const text = sample('thin_dump-all.xml').replace('origin_begin="100"', 'origin_begin="1x0"');
    await assert.rejects(buildFullPlan(input(text), { devId: 3, spoolDir: dir, mappingSpool: true }), isCode('BAD_METADATA', /line 6\b/, /origin_begin/));
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
