/**
 * The built-in default: a small offline thin pool made from scratch with
 * thin_restore (metadata) plus a data file, holding two snapshots of one
 * volume. `thinship demo` and the README's first command run on it, and the
 * tests use it as a known source. Everything is deterministic (seeded), so the
 * expected plans are known exactly.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { runTool } from '../exec/run.js';

const DEMO_BLOCK_BYTES = 64 * 1024;
const DEMO_VOLUME_BLOCKS = 1024; // 64 MiB volume
const DEMO_BASE_DEV_ID = 1;
const DEMO_SNAP_DEV_ID = 2;

/** Origin block ranges [begin, end) of each snapshot, and which ones snap2 rewrote. */
const DEMO_LAYOUT = {
  base: [
    [0, 300],
    [500, 600],
    [900, 1000],
  ] as [number, number][],
  /** snap2 = base, with these overwritten (new data blocks)... */
  rewritten: [
    [10, 20],
    [950, 960],
  ] as [number, number][],
  /** ...these added... */
  added: [[700, 710]] as [number, number][],
  /** ...and these discarded. */
  discarded: [[550, 560]] as [number, number][],
};

export interface DemoPool {
  dir: string;
  metadataPath: string;
  dataPath: string;
  blockBytes: number;
  volumeSizeBytes: number;
  baseDevId: number;
  snapDevId: number;
}

/** xorshift32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Mixed content, about 2:1 under zstd: random bytes, then text-like runs. */
export function fillDemoBlock(buf: Buffer, seed: number): void {
  const r = prng(seed * 2654435761);
  const words = ['thin ', 'pool ', 'block ', 'snapshot ', 'volume ', 'send ', 'recv ', 'zstd '];
  let i = 0;
  while (i < buf.length) {
    const runLen = Math.min(buf.length - i, 256 + (r() % 1024));
    if (r() % 2 === 0) {
      for (let j = 0; j < runLen; j += 4) buf.writeUInt32LE(r(), i + j > buf.length - 4 ? buf.length - 4 : i + j);
    } else {
      let j = 0;
      while (j < runLen) {
        const w = words[r() % words.length]!;
        buf.write(w, i + j, Math.min(w.length, runLen - j), 'latin1');
        j += w.length;
      }
    }
    i += runLen;
  }
}

interface Mapped {
  origin: number;
  data: number;
}

function expand(ranges: [number, number][]): number[] {
  return ranges.flatMap(([b, e]) => Array.from({ length: e - b }, (_, k) => b + k));
}

/** Builds the demo pool in `dir` (created if missing). */
export async function createDemoPool(dir: string): Promise<DemoPool> {
  await mkdir(dir, { recursive: true });
  const inRanges = (b: number, rs: [number, number][]) => rs.some(([s, e]) => b >= s && b < e);
  // Base: data block = position in allocation order.
  let nextData = 0;
  const base: Mapped[] = expand(DEMO_LAYOUT.base).map((o) => ({ origin: o, data: nextData++ }));
  const snap: Mapped[] = [];
  const newBlocks = new Map<number, number>();
  for (const o of [...expand(DEMO_LAYOUT.base), ...expand(DEMO_LAYOUT.added)].sort((a, b) => a - b)) {
    if (inRanges(o, DEMO_LAYOUT.discarded)) continue;
    if (inRanges(o, DEMO_LAYOUT.rewritten) || inRanges(o, DEMO_LAYOUT.added)) {
      const d = nextData++;
      newBlocks.set(d, o);
      snap.push({ origin: o, data: d });
    } else {
      snap.push({ origin: o, data: base.find((m) => m.origin === o)!.data });
    }
  }
  const sectors = DEMO_BLOCK_BYTES / 512;
  const dev = (id: number, ms: Mapped[], tx: number) =>
    `  <device dev_id="${id}" mapped_blocks="${ms.length}" transaction="${tx}" creation_time="${tx}" snap_time="${tx}">\n` +
    ms.map((m) => `    <single_mapping origin_block="${m.origin}" data_block="${m.data}" time="${tx}"/>\n`).join('') +
    '  </device>\n';
  const xml =
    `<superblock uuid="" time="2" transaction="2" version="2" data_block_size="${sectors}" nr_data_blocks="${nextData}">\n` +
    dev(DEMO_BASE_DEV_ID, base, 0) +
    dev(DEMO_SNAP_DEV_ID, snap, 1) +
    '</superblock>\n';
  const xmlPath = join(dir, 'demo-pool.xml');
  await writeFile(xmlPath, xml);
  const metadataPath = join(dir, 'demo-pool.tmeta');
  const fh = await open(metadataPath, 'w');
  await fh.truncate(8 * 1024 * 1024);
  await fh.close();
  await runTool('thin_restore', ['-i', xmlPath, '-o', metadataPath]);
  // Data file: each data block's content is derived from (data block number).
  const dataPath = join(dir, 'demo-pool.tdata');
  const out = createWriteStream(dataPath);
  const buf = Buffer.alloc(DEMO_BLOCK_BYTES);
  for (let d = 0; d < nextData; d++) {
    fillDemoBlock(buf, d + 1);
    if (!out.write(Buffer.from(buf))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return {
    dir,
    metadataPath,
    dataPath,
    blockBytes: DEMO_BLOCK_BYTES,
    volumeSizeBytes: DEMO_VOLUME_BLOCKS * DEMO_BLOCK_BYTES,
    baseDevId: DEMO_BASE_DEV_ID,
    snapDevId: DEMO_SNAP_DEV_ID,
  };
}
