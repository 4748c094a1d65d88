/**
 * The native addon's functions for the metadata reader (native/thinship_device.c):
 * the per-byte and per-key loops of checking a block, which in JavaScript
 * dominated a cold run (an incremental reads a few thousand blocks, too few
 * for the JIT to catch up; measured: parsing 2143 nodes cold cost 35 ms of CPU,
 * 5 ms warm). Not in NativeDevice's interface (only the metadata reader uses
 * them). Each has a JavaScript twin that is the reference (unit tests check
 * they agree) and the fallback when the addon is not built.
 */
import { nativeDevice } from '../../device/native.js';
import { ThinshipError } from '../../errors.js';
import { LoopYielder } from './block-reader.js';

export interface MetadataAddon {
  /** CRC-32C register after b[start, end) from seed, no final inversion (SSE4.2 where the CPU has it). */
  crc32c?: (seed: number, b: Uint8Array, start: number, end: number) => number;
  /** Index of the first of a node's keys that is unsafe, out of order or outside [lo, hi); -1 if none. */
  firstBadKey?: (node: Uint8Array, nrEntries: number, lo: number, hi: number) => number;
  /** True when the block passes every check of parseNode (checksum, own block number, header, keys in [lo, hi)). */
  checkNode?: (node: Uint8Array, block: number, leafValueSize: number, lo: number, hi: number) => boolean;
  /**
   * The delta's whole parallel walk in C (delta.ts's walkDelta is its JavaScript twin): a walk of the
   * base's (left) and the snapshot's (right) mapping trees on fd, for deltaWalkNext.
   */
  deltaWalkStart?: (fd: number, nrBlocks: number, path: string, leftRoot: number, leftDevId: number, rightRoot: number, rightDevId: number) => object;
  /**
   * The walk's next plan runs into out (triples: first block, length, kind 0 data / 1 unmap, merged and in
   * increasing order); stats[0] = blocks read, stats[1] = shared subtrees skipped, so far. Returns runs * 2,
   * + 1 when the walk is done. A fault throws an Error with code BAD_METADATA or IO_ERROR, message and block.
   */
  deltaWalkNext?: (walk: object, out: Float64Array, stats: Float64Array) => number;
  /** A full plan's walk in C (reader.ts walkMappedRuns' JavaScript walk is its twin): the mapping tree at root, for mappedRunsWalkNext. */
  mappedRunsWalkStart?: (fd: number, nrBlocks: number, path: string, root: number, devId: number) => object;
  /**
   * The walk's next runs of mapped blocks into out (pairs: first block, length; at least 1024 numbers), stats[0] =
   * blocks read so far. Returns runs * 2, + 1 when the walk is done. Faults throw as deltaWalkNext's.
   */
  mappedRunsWalkNext?: (walk: object, out: Float64Array, stats: Float64Array) => number;
}

let addon: MetadataAddon | undefined;

/**
 * Runs a walk of the addon (deltaWalkNext, mappedRunsWalkNext) to its end: `next` fills `out` and returns
 * items * 2 (+ 1 when done); each batch is handed to `onBatch` (awaited; `out` is reused after), and the
 * event loop turns between calls. The addon's faults (an Error with code BAD_METADATA or IO_ERROR and the
 * metadata block) become the ThinshipErrors the JavaScript walks throw.
 */
export async function runAddonWalk(
  next: (out: Float64Array) => number,
  out: Float64Array,
  onBatch: (out: Float64Array, count: number) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const yielder = new LoopYielder();
  try {
    for (;;) {
      signal?.throwIfAborted();
      const res = next(out);
      const count = Math.floor(res / 2);
      if (count > 0) await onBatch(out, count);
      if (res % 2 === 1) return;
      await yielder.due();
    }
  } catch (e) {
    const c = e as Error & { code?: unknown; block?: unknown };
    if ((c.code === 'BAD_METADATA' || c.code === 'IO_ERROR') && typeof c.block === 'number')
      throw new ThinshipError(c.code, c.message, { details: { block: c.block } });
    throw e;
  }
}

export function metadataAddon(): MetadataAddon {
  if (addon !== undefined) return addon;
  try {
    const n = nativeDevice() as unknown as MetadataAddon;
    addon = {
      crc32c: typeof n.crc32c === 'function' ? n.crc32c : undefined,
      firstBadKey: typeof n.firstBadKey === 'function' ? n.firstBadKey : undefined,
      checkNode: typeof n.checkNode === 'function' ? n.checkNode : undefined,
      deltaWalkStart: typeof n.deltaWalkStart === 'function' ? n.deltaWalkStart : undefined,
      deltaWalkNext: typeof n.deltaWalkNext === 'function' ? n.deltaWalkNext : undefined,
      mappedRunsWalkStart: typeof n.mappedRunsWalkStart === 'function' ? n.mappedRunsWalkStart : undefined,
      mappedRunsWalkNext: typeof n.mappedRunsWalkNext === 'function' ? n.mappedRunsWalkNext : undefined,
    };
  } catch {
    addon = {};
  }
  return addon;
}
