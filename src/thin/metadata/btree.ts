/**
 * persistent-data btree nodes (the kernel's drivers/md/persistent-data/
 * dm-btree-internal.h and dm-btree.c; thin-provisioning-tools src/pdata/btree.rs).
 * One node per 4 KiB metadata block, little endian:
 *
 *     0 csum u32          crc32c of bytes 4..4095, xor 121107
 *     4 flags u32         1 = internal, 2 = leaf
 *     8 blocknr u64       this block's own number
 *    16 nr_entries u32
 *    20 max_entries u32   a multiple of 3
 *    24 value_size u32    8 in internal nodes (child block numbers)
 *    28 padding u32
 *    32 keys u64[max_entries], then values [max_entries * value_size]
 *
 * Keys increase strictly; in an internal node key[i] is a lower bound of the
 * keys in child i (so child i holds keys in [key[i], key[i+1])).
 *
 * Every node read is checked here (own block number, checksum, flags, sizes,
 * key order, keys inside the range its parent gives it) and the walks refuse
 * loops: bad metadata is a BAD_METADATA error naming the block, never a plan.
 */
import { ThinshipError } from '../../errors.js';
import { blockChecksum } from './crc32c.js';
import { metadataAddon, type MetadataAddon } from './addon.js';
import { MAX_RUN_BLOCKS, METADATA_BLOCK_BYTES, type BlockReader } from './block-reader.js';

const BTREE_CSUM_XOR = 121107;
export const NODE_HEADER_BYTES = 32;
export const INTERNAL_NODE = 1;
const LEAF_NODE = 2;
/** Deeper than any real tree (a 4 KiB node has >= 84 children): a deeper walk is a loop. */
export const MAX_DEPTH = 32;
/** Upper bound for keys in the root's range (keys are u64; larger ones fail as unsafe integers first). */
export const KEY_END = Number.MAX_SAFE_INTEGER + 1;

/**
 * Nodes are read as 32-bit words (a Uint32Array over the block: one load per
 * word where Buffer.readUInt32LE makes four), which are little endian only on
 * a little-endian host; on another, `auto` falls back to the thin tools (see
 * unknownFormat in superblock.ts).
 */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The block as 32-bit words (copied first when it does not start at a multiple of 4 bytes). */
export function wordsOf(buf: Buffer): Uint32Array {
  const b = buf.byteOffset % 4 === 0 ? buf : Buffer.from(buf);
  return new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
}

/** A checked node; `words` is buf as 32-bit words: key i is words 8 + 2i (low) and 9 + 2i (high). */
export class BtreeNode {
  constructor(
    readonly block: number,
    readonly buf: Buffer,
    readonly leaf: boolean,
    readonly nrEntries: number,
    readonly maxEntries: number,
    readonly valueSize: number,
    /** buf as 32-bit words (wordsOf). */
    readonly words: Uint32Array,
  ) {}

  key(i: number): number {
    const w = (NODE_HEADER_BYTES >>> 2) + 2 * i;
    return this.words[w + 1]! * 0x1_0000_0000 + this.words[w]!;
  }

  /** Byte offset of value i in buf. */
  valueOffset(i: number): number {
    return NODE_HEADER_BYTES + 8 * this.maxEntries + this.valueSize * i;
  }

  /** Value i as a u64 block number (internal nodes; the thin mapping tree's top level). */
  u64Value(i: number, what: string): number {
    const w = this.valueOffset(i) >>> 2;
    const hi = this.words[w + 1]!;
    if (hi > 0x1fffff) throw bad(this.block, `${what}: value ${i} (${this.buf.readBigUInt64LE(w * 4)}) is beyond the largest integer this program handles`);
    return hi * 0x1_0000_0000 + this.words[w]!;
  }
}

function bad(block: number, msg: string): ThinshipError {
  return new ThinshipError('BAD_METADATA', `metadata block ${block}: ${msg}`, { details: { block } });
}

/**
 * Checks and wraps block `block` as a btree node whose leaves hold values of
 * `leafValueSize` bytes and whose keys lie in [lo, hi). `bufWords`, when
 * given, is buf as 32-bit words (a caller that reuses buf keeps its view).
 */
export function parseNode(buf: Buffer, block: number, leafValueSize: number, lo: number, hi: number, what: string, bufWords?: Uint32Array): BtreeNode {
  // The addon's checkNode runs every check below in one call; only a block it refuses goes through them here, to name the fault.
  if ((checkNode ??= metadataAddon().checkNode ?? null) !== null && checkNode(buf, block, leafValueSize, lo, hi)) {
    return checkedNode(buf, block, bufWords ?? wordsOf(buf));
  }
  return parseNodeJs(buf, block, leafValueSize, lo, hi, what);
}

/** The node in buf, which the addon's checkNode has checked; `words` is buf as 32-bit words. */
function checkedNode(buf: Buffer, block: number, words: Uint32Array): BtreeNode {
  return new BtreeNode(block, buf, words[1] === LEAF_NODE, words[4]!, words[5]!, words[6]!, words);
}

/** parseNode's checks in JavaScript: the reference for the addon's checkNode, and what names the fault of a node it refuses. */
export function parseNodeJs(buf: Buffer, block: number, leafValueSize: number, lo: number, hi: number, what: string): BtreeNode {
  const csum = blockChecksum(buf, BTREE_CSUM_XOR);
  if (csum !== buf.readUInt32LE(0)) throw bad(block, `${what}: btree node checksum mismatch (stored ${buf.readUInt32LE(0)}, computed ${csum})`);
  const blocknr = buf.readUInt32LE(12) * 0x1_0000_0000 + buf.readUInt32LE(8);
  if (blocknr !== block) throw bad(block, `${what}: btree node says it is block ${blocknr}`);
  const flags = buf.readUInt32LE(4);
  if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) throw bad(block, `${what}: btree node flags ${flags} are neither internal (1) nor leaf (2)`);
  const leaf = flags === LEAF_NODE;
  const nr = buf.readUInt32LE(16);
  const max = buf.readUInt32LE(20);
  const vs = buf.readUInt32LE(24);
  const wantVs = leaf ? leafValueSize : 8;
  if (vs !== wantVs) throw bad(block, `${what}: ${leaf ? 'leaf' : 'internal node'} has value size ${vs}, expected ${wantVs}`);
  if (max === 0 || max % 3 !== 0) throw bad(block, `${what}: max_entries ${max} is not a positive multiple of 3`);
  if (NODE_HEADER_BYTES + (8 + vs) * max > METADATA_BLOCK_BYTES) throw bad(block, `${what}: max_entries ${max} of ${vs}-byte values do not fit a block`);
  if (nr > max) throw bad(block, `${what}: nr_entries ${nr} > max_entries ${max}`);
  if (!leaf && nr === 0) throw bad(block, `${what}: internal node without entries`);
  const node = new BtreeNode(block, buf, leaf, nr, max, vs, wordsOf(buf));
  const badKey = nr === 0 ? -1 : (firstBadKey ??= metadataAddon().firstBadKey ?? firstBadKeyJs)(buf, nr, lo, hi);
  if (badKey >= 0) throw keyError(node, badKey, lo, hi, what);
  return node;
}

/** The addon's checkNode, null without the addon (chosen at the first node, as crc32c). */
let checkNode: MetadataAddon['checkNode'] | null | undefined;

/**
 * The index of the first of a node's keys that is beyond 2^53 - 1, not above
 * the key before it, or outside [lo, hi); -1 when every key is fine. The
 * addon's firstBadKey is this scan in C (a unit test checks they agree).
 */
export function firstBadKeyJs(buf: Uint8Array, nrEntries: number, lo: number, hi: number): number {
  const words = buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, (NODE_HEADER_BYTES >>> 2) + 2 * nrEntries) : wordsOf(Buffer.from(buf));
  let prev = -1;
  for (let i = 0; i < nrEntries; i++) {
    const w = (NODE_HEADER_BYTES >>> 2) + 2 * i;
    if (words[w + 1]! > 0x1fffff) return i;
    const k = words[w + 1]! * 0x1_0000_0000 + words[w]!;
    if (k <= prev || k < lo || k >= hi) return i;
    prev = k;
  }
  return -1;
}

/** Chosen at the first node, not at import (as crc32c). */
let firstBadKey: ((buf: Uint8Array, nrEntries: number, lo: number, hi: number) => number) | undefined;

/** The error for key i, which firstBadKey found. */
function keyError(node: BtreeNode, i: number, lo: number, hi: number, what: string): ThinshipError {
  const w = (NODE_HEADER_BYTES >>> 2) + 2 * i;
  if (node.words[w + 1]! > 0x1fffff)
    return bad(node.block, `${what}: key ${i} (${node.buf.readBigUInt64LE(w * 4)}) is beyond the largest integer this program handles`);
  const k = node.key(i);
  if (i > 0 && k <= node.key(i - 1)) return bad(node.block, `${what}: keys out of order (key ${i} is ${k}, after ${node.key(i - 1)})`);
  return bad(node.block, `${what}: key ${k} is outside the range [${lo}, ${hi === KEY_END ? 'end' : hi}) its parent gives it`);
}

/** Reads (through the cache) and checks a node. */
function readNode(r: BlockReader, block: number, leafValueSize: number, lo: number, hi: number, what: string): BtreeNode {
  return parseNode(r.read(block, what), block, leafValueSize, lo, hi, what);
}

/** Child i's key range inside a node whose range is [lo, hi). */
export function childRange(n: BtreeNode, i: number, hi: number): [number, number] {
  return [n.key(i), i + 1 < n.nrEntries ? n.key(i + 1) : hi];
}

interface WalkFrame {
  n: BtreeNode;
  /** Next child to visit. */
  i: number;
  hi: number;
  /** This level's run buffer: children [runFrom, runFrom + runCount) are in it, block after block. */
  run: Buffer;
  runFrom: number;
  runCount: number;
}

/**
 * Consecutive children of one internal node that say they are leaves (their
 * flags word; nothing else of them is checked yet: the consumer checks each
 * with parseNode or the addon's equivalent): children index .. index + count
 * of `parent` (whose range ends at `hi`), blocks firstBlock + k, at
 * run[(from + k) * 4 KiB]. Valid until the walk is resumed.
 */
export interface LeafBatch {
  run: Buffer;
  from: number;
  count: number;
  firstBlock: number;
  parent: BtreeNode;
  index: number;
  hi: number;
}

/** Leaf k of a batch, checked (BAD_METADATA naming the block when it is not a good leaf). */
export function leafOfBatch(b: LeafBatch, k: number, leafValueSize: number, what: string): BtreeNode {
  const [lo, hi] = childRange(b.parent, b.index + k, b.hi);
  const n = parseNode(
    b.run.subarray((b.from + k) * METADATA_BLOCK_BYTES, (b.from + k + 1) * METADATA_BLOCK_BYTES),
    b.firstBlock + k,
    leafValueSize,
    lo,
    hi,
    what,
  );
  if (!n.leaf) throw bad(n.block, `${what}: btree node flags changed while it was read`);
  return n;
}

/**
 * The leaves of the tree at `root`, in key order (depth first, constant
 * memory): a root that is a leaf as a checked node, every other leaf in
 * batches of its parent's consecutive children (LeafBatch, for the consumer
 * to check). Children are read uncached, consecutive block numbers in one read
 * of up to MAX_RUN_BLOCKS, into one buffer per level that the walk reuses: a
 * yielded batch is valid only until the next one is asked for. A child node
 * lives in its parent level's buffer, which is refilled only after the
 * child's frame is done. Loops (a child that is one of its ancestors) and
 * trees deeper than MAX_DEPTH are BAD_METADATA.
 */
export function* leafBatches(r: BlockReader, root: number, leafValueSize: number, what: string): Generator<BtreeNode | LeafBatch> {
  const rootNode = readNode(r, root, leafValueSize, 0, KEY_END, what);
  if (rootNode.leaf) {
    yield rootNode;
    return;
  }
  const runs: Buffer[] = [];
  const runOf = (depth: number): Buffer => (runs[depth] ??= Buffer.allocUnsafeSlow(MAX_RUN_BLOCKS * METADATA_BLOCK_BYTES));
  const stack: WalkFrame[] = [{ n: rootNode, i: 0, hi: KEY_END, run: runOf(0), runFrom: 0, runCount: 0 }];
  const onPath = new Set<number>([root]);
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.i >= f.n.nrEntries) {
      stack.pop();
      onPath.delete(f.n.block);
      continue;
    }
    const i = f.i;
    const child = f.n.u64Value(i, what);
    if (onPath.has(child)) throw bad(child, `${what}: loop: block ${f.n.block} points back to its ancestor ${child}`);
    if (stack.length >= MAX_DEPTH) throw bad(child, `${what}: tree deeper than ${MAX_DEPTH} levels (a loop?)`);
    if (i >= f.runFrom + f.runCount) {
      // Children i.. whose block numbers follow each other, in one read.
      r.check(child, what);
      let count = 1;
      while (i + count < f.n.nrEntries && count < MAX_RUN_BLOCKS) {
        const next = f.n.u64Value(i + count, what);
        if (next !== child + count || !r.inside(next)) break;
        count++;
      }
      r.readRun(child, count, f.run);
      f.runFrom = i;
      f.runCount = count;
    }
    const k = i - f.runFrom;
    // The children from here in the run that say they are leaves: one batch (a leaf is never an
    // ancestor, so no loop check for them).
    let leaves = 0;
    while (k + leaves < f.runCount && f.run.readUInt32LE((k + leaves) * METADATA_BLOCK_BYTES + 4) === LEAF_NODE) leaves++;
    if (leaves > 0) {
      f.i += leaves;
      yield { run: f.run, from: k, count: leaves, firstBlock: child, parent: f.n, index: i, hi: f.hi };
      continue;
    }
    f.i++;
    const [lo, hi] = childRange(f.n, i, f.hi);
    const c = parseNode(f.run.subarray(k * METADATA_BLOCK_BYTES, (k + 1) * METADATA_BLOCK_BYTES), child, leafValueSize, lo, hi, what);
    if (c.leaf) {
      yield c;
      continue;
    } // unreachable: its flags said internal, and parseNode checked them
    stack.push({ n: c, i: 0, hi, run: runOf(stack.length), runFrom: 0, runCount: 0 });
    onPath.add(child);
  }
}

/** The leaves of the tree at `root`, in key order, each checked (leafBatches; a leaf is valid until the next is asked for). */
export function* leaves(r: BlockReader, root: number, leafValueSize: number, what: string): Generator<BtreeNode> {
  for (const x of leafBatches(r, root, leafValueSize, what)) {
    if (x instanceof BtreeNode) {
      yield x;
      continue;
    }
    for (let k = 0; k < x.count; k++) yield leafOfBatch(x, k, leafValueSize, what);
  }
}

/** The value offset of `key` in its leaf, or undefined when the tree does not hold it. */
export function lookup(r: BlockReader, root: number, leafValueSize: number, key: number, what: string): { node: BtreeNode; index: number } | undefined {
  let block = root;
  let lo = 0,
    hi = KEY_END;
  const onPath = new Set<number>();
  for (let depth = 0; ; depth++) {
    if (onPath.has(block)) throw bad(block, `${what}: loop: a lookup came back to block ${block}`);
    if (depth >= MAX_DEPTH) throw bad(block, `${what}: tree deeper than ${MAX_DEPTH} levels (a loop?)`);
    onPath.add(block);
    const n = readNode(r, block, leafValueSize, lo, hi, what);
    // Last entry whose key <= key.
    let a = 0,
      b = n.nrEntries - 1,
      at = -1;
    while (a <= b) {
      const m = (a + b) >>> 1;
      if (n.key(m) <= key) {
        at = m;
        a = m + 1;
      } else b = m - 1;
    }
    if (n.leaf) return at >= 0 && n.key(at) === key ? { node: n, index: at } : undefined;
    if (at < 0) return undefined;
    [lo, hi] = childRange(n, at, hi);
    block = n.u64Value(at, what);
  }
}

/** The largest key in the tree, or -1 when it is empty (reads the right spine, backing off empty leaves). */
export function lastKey(r: BlockReader, root: number, leafValueSize: number, what: string): number {
  const visit = (block: number, lo: number, hi: number, path: Set<number>): number => {
    if (path.has(block)) throw bad(block, `${what}: loop: block ${block} is its own ancestor`);
    if (path.size >= MAX_DEPTH) throw bad(block, `${what}: tree deeper than ${MAX_DEPTH} levels (a loop?)`);
    const n = readNode(r, block, leafValueSize, lo, hi, what);
    if (n.leaf) return n.nrEntries > 0 ? n.key(n.nrEntries - 1) : -1;
    path.add(block);
    for (let i = n.nrEntries - 1; i >= 0; i--) {
      const [clo, chi] = childRange(n, i, hi);
      const k = visit(n.u64Value(i, what), clo, chi, path);
      if (k >= 0) return k;
    }
    path.delete(block);
    return -1;
  };
  return visit(root, 0, KEY_END, new Set());
}
