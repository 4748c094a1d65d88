/**
 * Offline thin pools for the transfer benchmark: thin_restore metadata plus a
 * data file, deterministic from a seed, cached on disk between runs.
 *
 * Device A (id 1) is the volume a full send sends; device B (id 2) is a later
 * snapshot of it with `changeFraction` of A's mapped blocks rewritten (new data
 * blocks) and `discardFraction` unmapped, so `1 → 2` is the incremental.
 *
 * Layout: A's mapped origin blocks come in runs separated by holes (unmapped,
 * about `holeFraction` of the volume). A's data blocks are allocated in origin
 * order, so the data file starts with A's blocks in volume order; B's new
 * blocks follow. Every data block's content is a pure function of (seed, data
 * block number): a 64 KiB slice of a "bank" of mixed data (pseudo-random runs
 * and text-like runs, ~2:1 under zstd -1), stamped with its number so no two
 * blocks are equal; `zeroBlockFraction` of the blocks are all zeros (as in
 * real images). zstd -1 looks back 512 KiB at most, and slices are taken at
 * random bank offsets, so reusing the bank does not inflate the ratio.
 *
 * The generator computes the sha256 of both devices' full volume images (holes
 * as zeros) while writing, so a benchmark can check a target byte for byte
 * without a second reader of the pool.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from '../src/exec/run.js';
import { openVolume } from '../src/device/volume.js';

/** Bump when the layout or content rules change: cached pools are keyed by it. */
export const GENERATOR_VERSION = 1;

export interface BenchPoolParams {
  volumeBytes: number;
  /** Pool block size (LVM's default thin chunk is 64 KiB). */
  blockBytes: number;
  seed: number;
  /** Fraction of the volume A leaves unmapped. */
  holeFraction: number;
  /** Fraction of A's mapped blocks that B rewrites. */
  changeFraction: number;
  /** Fraction of A's mapped blocks that B no longer maps. */
  discardFraction: number;
  /** Fraction of data blocks that are all zeros. */
  zeroBlockFraction: number;
  /** Share of pseudo-random (incompressible) runs in the bank; the rest is text-like. */
  randomFraction: number;
}

export const DEFAULT_POOL_PARAMS: Omit<BenchPoolParams, 'volumeBytes'> = {
  blockBytes: 64 * 1024,
  seed: 20240605,
  holeFraction: 0.15,
  changeFraction: 0.01,
  discardFraction: 0.001,
  zeroBlockFraction: 0.03,
  randomFraction: 0.29,
};

export interface BenchPool {
  dir: string;
  metadataPath: string;
  dataPath: string;
  params: BenchPoolParams;
  devA: number;
  devB: number;
  volumeBlocks: number;
  mappedBlocksA: number;
  mappedBlocksB: number;
  changedBlocks: number;
  discardedBlocks: number;
  dataBlocks: number;
  dataFileBytes: number;
  /** sha256 (hex) of each device's whole volume image, unmapped space as zeros. */
  imageSha256A: string;
  imageSha256B: string;
  /** zstd -1 ratio of the first 64 MiB of A's data (original / compressed). */
  sampleZstd1Ratio: number;
  generateSeconds: number;
  generatorVersion: number;
}

/** Directory name for a parameter set: same parameters, same pool. */
export function poolKey(p: BenchPoolParams): string {
  const h = createHash('sha256')
    .update(JSON.stringify({ ...p, v: GENERATOR_VERSION }))
    .digest('hex')
    .slice(0, 10);
  return `pool-${formatSize(p.volumeBytes)}-${h}`;
}

function formatSize(b: number): string {
  for (const [u, m] of [
    ['T', 2 ** 40],
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const)
    if (b % m === 0) return `${b / m}${u}`;
  return String(b);
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

/** murmur3's finalizer: a good 32-bit mix of a block number and the seed. */
function mix32(a: number, b: number): number {
  let h = (Math.imul(a, 0x9e3779b1) ^ b) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

const BANK_BYTES = 32 * 1024 * 1024;
const SLICE_ALIGN_BYTES = 4096;

/**
 * The bank: runs of 512 B–8 KiB, each either pseudo-random (AES-CTR keystream,
 * deterministic and fast) or text from a small Zipf-like vocabulary.
 */
export function makeBank(seed: number, randomFraction: number, bytes = BANK_BYTES): Buffer {
  const key = createHash('sha256').update(`thinship-bench-bank-${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const random = cipher.update(Buffer.alloc(bytes));
  const r = prng(seed ^ 0x5bd1e995);
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  const vocab: string[] = [];
  for (let i = 0; i < 300; i++) {
    const n = 2 + (r() % 9);
    let w = '';
    for (let j = 0; j < n; j++) w += letters[Math.min(25, Math.floor(-Math.log(1 - (r() % 10000) / 10000) * 5))];
    vocab.push(w);
  }
  const bank = Buffer.alloc(bytes);
  let i = 0;
  while (i < bytes) {
    const len = Math.min(bytes - i, 512 + (r() % 7680));
    if ((r() % 1000) / 1000 < randomFraction) {
      random.copy(bank, i, i, i + len);
    } else {
      let j = 0;
      while (j < len) {
        // Cubing a uniform variate skews choices towards the first words (a few common words, a long tail).
        const w = vocab[Math.floor(vocab.length * ((r() % 65536) / 65536) ** 3)]! + (r() % 8 === 0 ? '\n' : ' ');
        j += bank.write(w, i + j, Math.min(w.length, len - j), 'latin1');
      }
    }
    i += len;
  }
  return bank;
}

/** Content of data block `d` into `out` (blockBytes long). */
export function fillDataBlock(out: Buffer, d: number, bank: Buffer, p: BenchPoolParams): void {
  if (mix32(d, p.seed ^ 0x2545f491) % 10000 < p.zeroBlockFraction * 10000) {
    out.fill(0);
    return;
  }
  const slots = Math.floor((bank.length - out.length) / SLICE_ALIGN_BYTES);
  const off = (mix32(d, p.seed) % slots) * SLICE_ALIGN_BYTES;
  bank.copy(out, 0, off, off + out.length);
  // A stamp makes every block unique (no block-level dedup can help anyone).
  out.writeUInt32LE(d >>> 0, 0);
  out.writeUInt32LE(p.seed >>> 0, 4);
  out.writeUInt32LE(mix32(d, 7), 8);
}

interface Layout {
  volumeBlocks: number;
  /** Data block of each origin block in A, -1 = unmapped. */
  dataA: Int32Array;
  /** Same for B. */
  dataB: Int32Array;
  nDataA: number;
  nData: number;
  changed: number;
  discarded: number;
}

/** Decides which blocks are mapped, rewritten and discarded (no I/O). */
export function makeLayout(p: BenchPoolParams): Layout {
  const volumeBlocks = Math.floor(p.volumeBytes / p.blockBytes);
  const r = prng(p.seed ^ 0x1b873593);
  const dataA = new Int32Array(volumeBlocks).fill(-1);
  // Mapped runs of 1..512 blocks (mean ~256), holes sized for the wanted fraction.
  const meanMapped = 256.5;
  const meanHole = (p.holeFraction / (1 - p.holeFraction)) * meanMapped;
  const maxHole = Math.max(1, Math.round(2 * meanHole - 1));
  let o = 0;
  let nDataA = 0;
  while (o < volumeBlocks) {
    const run = 1 + (r() % 512);
    for (let k = 0; k < run && o < volumeBlocks; k++, o++) dataA[o] = nDataA++;
    if (p.holeFraction > 0) o += 1 + (r() % maxHole);
  }
  const dataB = Int32Array.from(dataA);
  // Exactly round(fraction × mapped) blocks rewritten, then discarded, in runs of
  // 1..16 blocks starting at random mapped blocks (runs never overlap).
  const mappedOrigins = new Int32Array(nDataA);
  for (let b = 0, k = 0; b < volumeBlocks; b++) if (dataA[b]! >= 0) mappedOrigins[k++] = b;
  const touched = new Uint8Array(volumeBlocks);
  const mark = (fraction: number, apply: (b: number) => void): number => {
    const want = Math.round(fraction * nDataA);
    let done = 0;
    for (let tries = 0; done < want && tries < 100 * nDataA + 1000; tries++) {
      const start = mappedOrigins[r() % nDataA]!;
      const run = Math.min(1 + (r() % 16), want - done);
      let ok = true;
      for (let b = start; b < start + run; b++)
        if (b >= volumeBlocks || dataA[b]! < 0 || touched[b]) {
          ok = false;
          break;
        }
      if (!ok) continue;
      for (let b = start; b < start + run; b++) {
        touched[b] = 1;
        apply(b);
      }
      done += run;
    }
    return done;
  };
  let nData = nDataA;
  const changedOrigins: number[] = [];
  const changed = mark(p.changeFraction, (b) => changedOrigins.push(b));
  // New data blocks in origin order (a pool allocates them as the writes come; order is irrelevant to the tools).
  changedOrigins.sort((x, y) => x - y);
  for (const b of changedOrigins) dataB[b] = nData++;
  const discarded = mark(p.discardFraction, (b) => {
    dataB[b] = -1;
  });
  return { volumeBlocks, dataA, dataB, nDataA, nData, changed, discarded };
}

/** thin_restore XML for a device: consecutive (origin, data) pairs become range_mappings. */
function deviceXml(devId: number, data: Int32Array, time: number): string {
  const parts: string[] = [];
  let mapped = 0;
  let b = 0;
  while (b < data.length) {
    if (data[b]! < 0) {
      b++;
      continue;
    }
    let e = b + 1;
    while (e < data.length && data[e]! === data[e - 1]! + 1) e++;
    const len = e - b;
    mapped += len;
    parts.push(
      len === 1
        ? `    <single_mapping origin_block="${b}" data_block="${data[b]}" time="${time}"/>\n`
        : `    <range_mapping origin_begin="${b}" data_begin="${data[b]}" length="${len}" time="${time}"/>\n`,
    );
    b = e;
  }
  return `  <device dev_id="${devId}" mapped_blocks="${mapped}" transaction="${time}" creation_time="${time}" snap_time="${time}">\n${parts.join('')}  </device>\n`;
}

async function zstd1Ratio(path: string, bytes: number): Promise<number> {
  const r = await runTool('sh', ['-c', 'head -c "$2" "$1" | zstd -1 -q -c | wc -c', 'sh', path, String(bytes)]);
  return bytes / Number(r.stdout.trim());
}

const MANIFEST = 'pool.json';

/**
 * Returns the cached pool for these parameters under workDir, or generates it
 * (a manifest written last marks a complete pool).
 */
export async function ensureBenchPool(workDir: string, params: BenchPoolParams, progress: (s: string) => void = () => undefined): Promise<BenchPool> {
  const dir = join(workDir, poolKey(params));
  const manifestPath = join(dir, MANIFEST);
  try {
    const m = JSON.parse(await readFile(manifestPath, 'utf8')) as BenchPool;
    const st = await stat(m.dataPath);
    await stat(m.metadataPath);
    if (st.size === m.dataFileBytes && m.generatorVersion === GENERATOR_VERSION) return m;
  } catch {
    /* not cached (or incomplete): generate */
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const p = params;
  const lay = makeLayout(p);
  progress(`generating ${formatSize(p.volumeBytes)} pool in ${dir}: ${lay.nData} data blocks of ${p.blockBytes} bytes`);

  // Metadata.
  const sectors = p.blockBytes / 512;
  const xml =
    `<superblock uuid="" time="2" transaction="2" version="2" data_block_size="${sectors}" nr_data_blocks="${lay.nData}">\n` +
    deviceXml(1, lay.dataA, 0) +
    deviceXml(2, lay.dataB, 1) +
    '</superblock>\n';
  const xmlPath = join(dir, 'pool.xml');
  await writeFile(xmlPath, xml);
  const metadataPath = join(dir, 'pool.tmeta');
  await writeFile(metadataPath, '');
  // Generous and sparse: thin_restore needs room for both devices' btrees.
  await truncate(metadataPath, Math.max(64 * 2 ** 20, lay.nData * 64));
  await runTool('thin_restore', ['-i', xmlPath, '-o', metadataPath]);

  // Data file, in big sequential writes; image hashes of A and B on the way.
  const bank = makeBank(p.seed, p.randomFraction);
  const dataPath = join(dir, 'pool.tdata');
  const fd = openSync(dataPath, 'w');
  const WRITE_BYTES = 16 * 2 ** 20;
  const blocksPerWrite = WRITE_BYTES / p.blockBytes;
  const wbuf = Buffer.alloc(blocksPerWrite * p.blockBytes);
  let wblocks = 0;
  const flushW = () => {
    if (wblocks > 0) {
      let off = 0;
      const n = wblocks * p.blockBytes;
      while (off < n) off += writeSync(fd, wbuf, off, n - off);
      wblocks = 0;
    }
  };
  const hashA = createHash('sha256');
  const hashB = createHash('sha256');
  const zeros = Buffer.alloc(p.blockBytes);
  const other = Buffer.alloc(p.blockBytes);
  try {
    let lastReport = performance.now();
    for (let o = 0; o < lay.volumeBlocks; o++) {
      const dA = lay.dataA[o]!;
      const dB = lay.dataB[o]!;
      if (dA < 0) {
        hashA.update(zeros);
      } else {
        // A's blocks are numbered in origin order: this is the next block of the file.
        const blk = wbuf.subarray(wblocks * p.blockBytes, (wblocks + 1) * p.blockBytes);
        fillDataBlock(blk, dA, bank, p);
        hashA.update(blk);
        if (dB === dA) hashB.update(blk);
        wblocks++;
        if (wblocks === blocksPerWrite) flushW();
      }
      if (dB < 0) hashB.update(zeros);
      else if (dB !== dA) {
        fillDataBlock(other, dB, bank, p);
        hashB.update(other);
      }
      if (performance.now() - lastReport > 5000) {
        progress(`  ${((100 * o) / lay.volumeBlocks).toFixed(0)}%`);
        lastReport = performance.now();
      }
    }
    flushW();
    // B's new blocks, after A's.
    for (let d = lay.nDataA; d < lay.nData; d++) {
      fillDataBlock(wbuf.subarray(wblocks * p.blockBytes, (wblocks + 1) * p.blockBytes), d, bank, p);
      wblocks++;
      if (wblocks === blocksPerWrite) flushW();
    }
    flushW();
    // On disk before the benchmark drops it from the page cache (dirty pages cannot be dropped).
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const h = await openVolume(dataPath, { mode: 'read' });
  try {
    await h.adviseDontNeed(0, 0);
  } finally {
    await h.close();
  }
  const ratio = await zstd1Ratio(dataPath, Math.min(64 * 2 ** 20, lay.nDataA * p.blockBytes));
  const pool: BenchPool = {
    dir,
    metadataPath,
    dataPath,
    params: p,
    devA: 1,
    devB: 2,
    volumeBlocks: lay.volumeBlocks,
    mappedBlocksA: lay.nDataA,
    mappedBlocksB: lay.dataB.reduce((n, d) => n + (d >= 0 ? 1 : 0), 0),
    changedBlocks: lay.changed,
    discardedBlocks: lay.discarded,
    dataBlocks: lay.nData,
    dataFileBytes: lay.nData * p.blockBytes,
    imageSha256A: hashA.digest('hex'),
    imageSha256B: hashB.digest('hex'),
    sampleZstd1Ratio: ratio,
    generateSeconds: (performance.now() - t0) / 1000,
    generatorVersion: GENERATOR_VERSION,
  };
  await writeFile(`${manifestPath}.tmp`, JSON.stringify(pool, null, 2) + '\n');
  await rename(`${manifestPath}.tmp`, manifestPath);
  progress(`  done in ${pool.generateSeconds.toFixed(1)} s; zstd -1 ratio of a 64 MiB sample ${ratio.toFixed(2)}`);
  return pool;
}
