/**
 * Deterministic generator of thin-pool metadata for tests and benchmarks:
 * writes thin_restore XML for a pool with two devices and runs thin_restore.
 *
 * Device A is an origin-like snapshot; device B a later snapshot that shares
 * most of A's blocks, with overwrites (new data blocks), removals (discards)
 * and additions (blocks mapped in A's holes). Data blocks are scattered so the
 * pool is fragmented: most mappings are single blocks, some are short ranges.
 *
 * The expected plan totals are computed here, from the generator's own
 * block-by-block bookkeeping (never by running the parser under test).
 *
 * The XML is written as it is generated (three passes over the same seeded
 * walk: one to count, since <superblock> and <device> carry counts, one per
 * device), so a 10 M-mapping pool needs no memory for the document.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from '../../src/exec/run.js';
import type { PlanTotals } from '../../src/thin/model.js';
import { prng } from './prng.js';

export interface PoolGenOptions {
  seed: number;
  /** Number of mapping elements thin_dump prints for device A (single_mapping + range_mapping). */
  mappings: number;
  /** Pool block size in sectors (default 128 = 64 KiB). */
  dataBlockSizeSectors?: number;
  devIdA?: number;
  devIdB?: number;
  /** Used for the expected op counts (default 1 MiB). */
  maxOpBytes?: number;
  /** Fraction of A's elements that are ranges of 2..8 blocks (default 0.1); the rest are single blocks. */
  rangeFraction?: number;
  /** Fraction of A's elements preceded by a hole of 1..8 unmapped blocks (default 0.3). */
  gapFraction?: number;
  /** Per block mapped in A: chance that B has new data there (default 0.05). */
  overwriteFraction?: number;
  /** Per block mapped in A: chance that B does not map it (default 0.02). */
  removeFraction?: number;
  /** Per hole block of A: chance that B maps it (default 0.1). */
  addFraction?: number;
  /** Unmapped blocks after the last element (default 64). */
  tailBlocks?: number;
}

export interface DeviceStats {
  devId: number;
  /** Elements thin_dump prints for the device. */
  elements: number;
  mappedBlocks: number;
  /** End of the last mapped block, in bytes. */
  mappedEndBytes: number;
}

export interface PoolExpectations {
  dataBlockSizeSectors: number;
  blockSizeBytes: number;
  nrDataBlocks: number;
  /** The thin volume size: every mapping and the tail. */
  volumeSizeBytes: number;
  a: DeviceStats;
  b: DeviceStats;
  /** thin_delta A→B prints ranges up to here (the end of the last block mapped in A or B). */
  deltaExtentBytes: number;
  /** Blocks per delta kind. */
  deltaBlocks: { same: number; different: number; leftOnly: number; rightOnly: number };
  /** Expected plan totals with volumeSizeBytes given. */
  fullA: PlanTotals;
  fullB: PlanTotals;
  delta: PlanTotals;
}

export interface GeneratedPool extends PoolExpectations {
  metadataPath: string;
  /** Present when keepXml was asked for. */
  xmlPath?: string;
  /** Sizes of what was written, for reports. */
  xmlBytes: number;
  metadataFileBytes: number;
}

/** Per-block event: `aData`/`bData` are -1 where the device does not map the block. */
type BlockVisitor = (origin: number, aData: number, aTime: number, bData: number, bTime: number) => void;

interface WalkEnd {
  endBlocks: number;
  nrDataBlocks: number;
}

/**
 * The seeded walk over the volume's blocks in order. Data blocks:
 * - A's single blocks: (e * STRIDE) mod P for element index e (P a power of two
 *   >= mappings, STRIDE odd and != 1), so neighbours are never consecutive;
 * - A's ranges and B's new blocks: a sequential region above P, with one free
 *   block after each allocation, so nothing merges by accident and A's element
 *   count is exactly `mappings`.
 */
function walk(o: Required<PoolGenOptions>, visit: BlockVisitor): WalkEnd {
  const rnd = prng(o.seed);
  let P = 1;
  while (P < o.mappings) P *= 2;
  const stride = P > 4 ? (Math.floor(P * 0.6180339887) | 1) % P : 3;
  let seq = P + 1;
  const B_TIME = 2;
  let origin = 0;
  const hole = (n: number): void => {
    for (let i = 0; i < n; i++, origin++) {
      if (rnd() < o.addFraction) {
        visit(origin, -1, 0, seq, B_TIME);
        seq += 2;
      } else {
        visit(origin, -1, 0, -1, 0);
      }
    }
  };
  for (let e = 0; e < o.mappings; e++) {
    if (rnd() < o.gapFraction) hole(1 + Math.floor(rnd() * 8));
    const len = rnd() < o.rangeFraction ? 2 + Math.floor(rnd() * 7) : 1;
    const aTime = rnd() < 0.5 ? 0 : 1;
    let aData: number;
    if (len === 1) {
      aData = (e * stride) % P;
    } else {
      aData = seq;
      seq += len + 1;
    }
    for (let i = 0; i < len; i++, origin++) {
      const r = rnd();
      if (r < o.removeFraction) {
        visit(origin, aData + i, aTime, -1, 0);
      } else if (r < o.removeFraction + o.overwriteFraction) {
        visit(origin, aData + i, aTime, seq, B_TIME);
        seq += 2;
      } else {
        visit(origin, aData + i, aTime, aData + i, aTime);
      }
    }
  }
  hole(o.tailBlocks);
  return { endBlocks: origin, nrDataBlocks: seq };
}

/** Merges per-block mappings into maximal elements, as thin_dump prints them (a change of time splits a range). */
class ElementMerger {
  elements = 0;
  mappedBlocks = 0;
  endBlock = 0;
  private o = -1;
  private d = 0;
  private t = 0;
  private n = 0;
  constructor(private readonly line?: (o: number, d: number, n: number, t: number) => void) {}
  push(o: number, d: number, t: number): void {
    this.mappedBlocks++;
    this.endBlock = o + 1;
    if (this.n > 0 && o === this.o + this.n && d === this.d + this.n && t === this.t) {
      this.n++;
      return;
    }
    this.flush();
    this.o = o;
    this.d = d;
    this.t = t;
    this.n = 1;
  }
  flush(): void {
    if (this.n === 0) return;
    this.elements++;
    this.line?.(this.o, this.d, this.n, this.t);
    this.n = 0;
  }
}

/** Counts maximal runs of consecutive blocks and what they cost as plan ops. */
class RunTally {
  bytes = 0;
  ops = 0;
  private begin = -1;
  private len = 0;
  constructor(
    private readonly blockBytes: number,
    private readonly maxOpBytes: number,
  ) {}
  block(o: number): void {
    if (this.len > 0 && o === this.begin + this.len) {
      this.len++;
      return;
    }
    this.close();
    this.begin = o;
    this.len = 1;
  }
  close(): void {
    if (this.len === 0) return;
    const bytes = this.len * this.blockBytes;
    this.bytes += bytes;
    this.ops += Math.ceil(bytes / this.maxOpBytes);
    this.len = 0;
  }
}

function withDefaults(opts: PoolGenOptions): Required<PoolGenOptions> {
  return {
    dataBlockSizeSectors: 128,
    devIdA: 1,
    devIdB: 2,
    maxOpBytes: 1024 * 1024,
    rangeFraction: 0.1,
    gapFraction: 0.3,
    overwriteFraction: 0.05,
    removeFraction: 0.02,
    addFraction: 0.1,
    tailBlocks: 64,
    ...opts,
  };
}

/** The counting pass: everything the XML header needs and the expected plans. */
export function expectations(opts: PoolGenOptions): PoolExpectations {
  const o = withDefaults(opts);
  const bs = o.dataBlockSizeSectors * 512;
  const a = new ElementMerger();
  const b = new ElementMerger();
  const fullA = new RunTally(bs, o.maxOpBytes);
  const fullB = new RunTally(bs, o.maxOpBytes);
  const deltaData = new RunTally(bs, o.maxOpBytes);
  const deltaUnmap = new RunTally(bs, o.maxOpBytes);
  const kinds = { same: 0, different: 0, leftOnly: 0, rightOnly: 0 };
  const end = walk(o, (origin, aData, aTime, bData, bTime) => {
    if (aData >= 0) {
      a.push(origin, aData, aTime);
      fullA.block(origin);
    }
    if (bData >= 0) {
      b.push(origin, bData, bTime);
      fullB.block(origin);
    }
    if (aData >= 0 && bData >= 0) {
      if (aData === bData) kinds.same++;
      else {
        kinds.different++;
        deltaData.block(origin);
      }
    } else if (aData >= 0) {
      kinds.leftOnly++;
      deltaUnmap.block(origin);
    } else if (bData >= 0) {
      kinds.rightOnly++;
      deltaData.block(origin);
    }
  });
  for (const x of [a, b]) x.flush();
  for (const t of [fullA, fullB, deltaData, deltaUnmap]) t.close();
  if (a.elements !== o.mappings) throw new Error(`generator bug: device A has ${a.elements} elements, wanted ${o.mappings}`);
  const volumeSizeBytes = end.endBlocks * bs;
  const totals = (data: RunTally, unmap?: RunTally): PlanTotals => ({
    dataBytes: data.bytes,
    unmapBytes: unmap?.bytes ?? 0,
    dataOps: data.ops,
    unmapOps: unmap?.ops ?? 0,
    volumeSizeBytes,
    blockSizeBytes: bs,
  });
  return {
    dataBlockSizeSectors: o.dataBlockSizeSectors,
    blockSizeBytes: bs,
    nrDataBlocks: end.nrDataBlocks,
    volumeSizeBytes,
    a: { devId: o.devIdA, elements: a.elements, mappedBlocks: a.mappedBlocks, mappedEndBytes: a.endBlock * bs },
    b: { devId: o.devIdB, elements: b.elements, mappedBlocks: b.mappedBlocks, mappedEndBytes: b.endBlock * bs },
    deltaExtentBytes: Math.max(a.endBlock, b.endBlock) * bs,
    deltaBlocks: kinds,
    fullA: totals(fullA),
    fullB: totals(fullB),
    delta: totals(deltaData, deltaUnmap),
  };
}

/**
 * Writes the thin_restore XML to `path` as a stream of 8192-line chunks
 * (synchronous writes: the walk is synchronous, and this keeps memory flat);
 * returns the expectations and the byte count.
 */
export function writePoolXml(path: string, opts: PoolGenOptions): { expect: PoolExpectations; bytes: number } {
  const o = withDefaults(opts);
  const expect = expectations(opts);
  const fd = openSync(path, 'w');
  let lines: string[] = [];
  let bytes = 0;
  const flush = (): void => {
    const chunk = lines.join('');
    lines = [];
    bytes += chunk.length;
    writeSync(fd, chunk);
  };
  const write = (s: string): void => {
    lines.push(s);
    if (lines.length >= 8192) flush();
  };
  const element = (org: number, d: number, n: number, t: number): void => {
    write(
      n === 1
        ? `    <single_mapping origin_block="${org}" data_block="${d}" time="${t}"/>\n`
        : `    <range_mapping origin_begin="${org}" data_begin="${d}" length="${n}" time="${t}"/>\n`,
    );
  };
  try {
    write(
      `<superblock uuid="" time="2" transaction="3" flags="0" version="2" data_block_size="${o.dataBlockSizeSectors}" nr_data_blocks="${expect.nrDataBlocks}">\n`,
    );
    for (const which of ['a', 'b'] as const) {
      const st = expect[which];
      write(
        `  <device dev_id="${st.devId}" mapped_blocks="${st.mappedBlocks}" transaction="${which === 'a' ? 1 : 2}" creation_time="${which === 'a' ? 1 : 2}" snap_time="2">\n`,
      );
      const m = new ElementMerger(element);
      walk(o, (origin, aData, aTime, bData, bTime) => {
        if (which === 'a') {
          if (aData >= 0) m.push(origin, aData, aTime);
        } else if (bData >= 0) m.push(origin, bData, bTime);
      });
      m.flush();
      if (m.elements !== st.elements) throw new Error(`generator bug: device ${which} wrote ${m.elements} elements, counted ${st.elements}`);
      write('  </device>\n');
    }
    write('</superblock>\n');
    flush();
  } finally {
    closeSync(fd);
  }
  return { expect, bytes };
}

/** A recorded sample's tool output: the file without its first `$ command` line and last `(exit N)` line. */
export function fixtureOutput(path: string): string {
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (!lines[0]?.startsWith('$ ') || !/^\(exit \d+\)$/.test(lines[lines.length - 1] ?? '')) {
    throw new Error(`${path} is not a recorded sample ($ command ... (exit N))`);
  }
  return lines
    .slice(1, -1)
    .map((l) => `${l}\n`)
    .join('');
}

/** Metadata file size for thin_restore: thin_metadata_size's estimate, or ours when larger (two full trees). */
async function metadataBytes(expect: PoolExpectations): Promise<number> {
  const MiB = 1024 * 1024;
  const entries = expect.a.mappedBlocks + expect.b.mappedBlocks;
  // Leaves of 4 KiB hold up to 254 entries of 16 bytes; thin_restore used ~32 bytes an entry (measured at 2 M),
  // so allow 64, plus the data space map (2 bits a block) and slack. The file is sparse: room costs nothing.
  const ours = 16 * MiB + entries * 64 + Math.ceil(expect.nrDataBlocks / 2);
  let theirs = 0;
  try {
    const r = await runTool('thin_metadata_size', [
      '-b',
      `${expect.blockSizeBytes / 1024}k`,
      '-s',
      `${Math.ceil((expect.nrDataBlocks * expect.blockSizeBytes) / 1024)}k`,
      '-m',
      '2',
      '-u',
      'b',
      '-n',
    ]);
    theirs = Number(r.stdout.trim().split(/\s+/)[0]);
  } catch {
    theirs = 0;
  }
  const bytes = Math.max(ours, Number.isFinite(theirs) ? theirs : 0);
  return Math.ceil(bytes / MiB) * MiB;
}

/**
 * Writes the XML into `dir`, restores it into `dir/meta.bin` (a sparse file)
 * with thin_restore, and deletes the XML unless keepXml.
 */
export async function generatePool(dir: string, opts: PoolGenOptions & { keepXml?: boolean }): Promise<GeneratedPool> {
  const xmlPath = join(dir, 'pool.xml');
  const metadataPath = join(dir, 'meta.bin');
  const { expect, bytes } = writePoolXml(xmlPath, opts);
  const size = await metadataBytes(expect);
  await writeFile(metadataPath, '');
  await truncate(metadataPath, size);
  try {
    await runTool('thin_restore', ['-i', xmlPath, '-o', metadataPath]);
  } finally {
    if (!opts.keepXml) await rm(xmlPath, { force: true });
  }
  return { ...expect, metadataPath, xmlPath: opts.keepXml ? xmlPath : undefined, xmlBytes: bytes, metadataFileBytes: size };
}
