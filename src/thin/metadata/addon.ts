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

export interface MetadataAddon {
  /** CRC-32C register after b[start, end) from seed, no final inversion (SSE4.2 where the CPU has it). */
  crc32c?: (seed: number, b: Uint8Array, start: number, end: number) => number;
  /** Index of the first of a node's keys that is unsafe, out of order or outside [lo, hi); -1 if none. */
  firstBadKey?: (node: Uint8Array, nrEntries: number, lo: number, hi: number) => number;
  /** True when the block passes every check of parseNode (checksum, own block number, header, keys in [lo, hi)). */
  checkNode?: (node: Uint8Array, block: number, leafValueSize: number, lo: number, hi: number) => boolean;
  /** pread of 4 KiB block `block` of fd into node, then checkNode: true when both succeed. */
  readNode?: (fd: number, block: number, node: Uint8Array, leafValueSize: number, lo: number, hi: number) => boolean;
  /** How many entries (at most max) from a's entry ia and b's entry ib have the same key and value bytes. */
  identicalEntries?: (a: Uint8Array, ia: number, b: Uint8Array, ib: number, max: number) => number;
  /** A checked leaf's keys as runs of consecutive blocks (out: first, length, ...); returns the number of runs. */
  mappedRuns?: (leaf: Uint8Array, out: Float64Array) => number;
  /**
   * mappedRuns over leaves run[from .. from + count) (blocks firstBlock + k, children index + k of
   * the checked node parent, whose range ends at hi), each checked as parseNode checks a leaf, appended
   * to out after its first `runs` pairs; stops at a leaf that fails a check or does not fit.
   * Returns leaves done * 2^20 + pairs in out.
   */
  mappedRunsOfLeaves?: (
    run: Uint8Array,
    from: number,
    count: number,
    firstBlock: number,
    parent: Uint8Array,
    index: number,
    hi: number,
    out: Float64Array,
    runs: number,
  ) => number;
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
}

let addon: MetadataAddon | undefined;

export function metadataAddon(): MetadataAddon {
  if (addon !== undefined) return addon;
  try {
    const n = nativeDevice() as unknown as MetadataAddon;
    addon = {
      crc32c: typeof n.crc32c === 'function' ? n.crc32c : undefined,
      firstBadKey: typeof n.firstBadKey === 'function' ? n.firstBadKey : undefined,
      checkNode: typeof n.checkNode === 'function' ? n.checkNode : undefined,
      readNode: typeof n.readNode === 'function' ? n.readNode : undefined,
      identicalEntries: typeof n.identicalEntries === 'function' ? n.identicalEntries : undefined,
      mappedRuns: typeof n.mappedRuns === 'function' ? n.mappedRuns : undefined,
      mappedRunsOfLeaves: typeof n.mappedRunsOfLeaves === 'function' ? n.mappedRunsOfLeaves : undefined,
      deltaWalkStart: typeof n.deltaWalkStart === 'function' ? n.deltaWalkStart : undefined,
      deltaWalkNext: typeof n.deltaWalkNext === 'function' ? n.deltaWalkNext : undefined,
    };
  } catch {
    addon = {};
  }
  return addon;
}
