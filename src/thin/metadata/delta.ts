/**
 * The delta of two devices' mapping trees by a parallel walk: both trees are
 * descended together and where both point at the same block (a snapshot
 * shares its origin's nodes until a write shadows them), that whole key range
 * is identical and is skipped unread. Only paths that differ are read, so the
 * cost follows the change, not the volume.
 *
 * Each tree is seen as a sequence of heads in key order: a leaf entry, or a
 * subtree not yet read (block, with the key range [lo, hi) its parent gives
 * it). The smaller head goes first; a subtree that may hold keys at or before
 * the other side's head is read (expanded); when both heads are the same
 * block, both skip it. Per block: mapped in both with the same data block =
 * same (not handed on); different data blocks = different; only in the base =
 * left_only; only in the snapshot = right_only (what thin_delta reports; time
 * is not compared).
 *
 * The planner runs this walk in the native addon (walkDeltaNative: the same
 * walk in C, native/thinship_device.c, handing on merged plan runs in a typed
 * array); walkDelta is its JavaScript twin, the reference the unit tests
 * check it against (runs, and the words of every fault) and the fallback
 * where the addon is not built.
 */
import { ThinshipError } from '../../errors.js';
import type { DeltaKind, DeltaRange } from '../model.js';
import { LoopYielder, METADATA_BLOCK_BYTES, type BlockReader } from './block-reader.js';
import { type BtreeNode, INTERNAL_NODE, KEY_END, MAX_DEPTH, NODE_HEADER_BYTES, childRange, parseNode, wordsOf } from './btree.js';
import { metadataAddon, runAddonWalk } from './addon.js';
import { MAPPING_VALUE_BYTES } from './reader.js';

const DELTA_BATCH = 4096;

interface Frame {
  n: BtreeNode;
  i: number;
  hi: number;
}

type Head = { sub: true; block: number; lo: number; hi: number } | { sub: false; key: number; dataBlock: number };

/** The data block of leaf value i: the upper 40 bits of `data_block << 24 | time`. */
function dataBlockOf(n: BtreeNode, i: number): number {
  const w = n.valueOffset(i) >>> 2;
  return n.words[w + 1]! * 256 + (n.words[w]! >>> 24);
}

/**
 * How many entries (at most `max`) from a's entry ia and b's entry ib have
 * identical key and value bytes: in leaves, the same block mapped to the same
 * data block; in internal nodes, the same child (a shared subtree).
 */
function identicalRun(a: BtreeNode, ia: number, b: BtreeNode, ib: number, max: number): number {
  return max <= 0 ? 0 : identicalBytes(a.buf, ia, b.buf, ib, max);
}

/**
 * identicalRun: galloping then bisecting with Buffer.compare (memcmp), a few
 * native calls for the long identical stretches of a node a write shadowed
 * instead of a JavaScript step per entry. An internal node's child number
 * beyond 2^53 - 1 ends the stretch (the walk reports it).
 */
function identicalBytes(a: Buffer, ia: number, b: Buffer, ib: number, max: number): number {
  const maxA = a.readUInt32LE(20),
    maxB = b.readUInt32LE(20),
    vs = a.readUInt32LE(24);
  if (max <= 0 || vs !== b.readUInt32LE(24)) return 0;
  const ka = NODE_HEADER_BYTES + 8 * ia,
    kb = NODE_HEADER_BYTES + 8 * ib;
  const va = NODE_HEADER_BYTES + 8 * maxA + vs * ia,
    vb = NODE_HEADER_BYTES + 8 * maxB + vs * ib;
  const equal = (k: number): boolean => a.compare(b, kb, kb + 8 * k, ka, ka + 8 * k) === 0 && a.compare(b, vb, vb + vs * k, va, va + vs * k) === 0;
  let n: number;
  if (!equal(1)) n = 0;
  else {
    let lo = 1,
      hi = 2; // equal(lo); hi unknown
    while (hi <= max && equal(hi)) {
      lo = hi;
      hi *= 2;
    }
    if (hi > max) {
      if (equal(max)) lo = hi = max;
      else hi = max;
    }
    while (hi - lo > 1) {
      const m = (lo + hi) >>> 1;
      if (equal(m)) lo = m;
      else hi = m;
    }
    n = lo;
  }
  if (a.readUInt32LE(4) === INTERNAL_NODE) {
    for (let i = 0; i < n; i++) if (a.readUInt32LE(va + vs * i + 4) > 0x1fffff) return i;
  }
  return n;
}

class Cursor {
  private readonly stack: Frame[] = [];
  private root: number | undefined;
  /**
   * One block buffer per depth, reused: the node at depth d lives in
   * depthBufs[d] until its frame is popped, and a frame is pushed only above
   * every live one. So a walk allocates nothing per block (a delta of two
   * unshared 2 M-mapping trees reads 47 000 blocks; a fresh Buffer each took
   * the peak RSS to 135 MiB before the collector caught up).
   */
  private readonly depthBufs: Buffer[] = [];
  /** depthBufs[d] as 32-bit words, made once. */
  private readonly depthWords: Uint32Array[] = [];

  constructor(
    private readonly r: BlockReader,
    root: number,
    private readonly what: string,
  ) {
    this.root = root;
  }

  /** The next item, or undefined at the end. */
  head(): Head | undefined {
    if (this.root !== undefined) return { sub: true, block: this.root, lo: 0, hi: KEY_END };
    for (;;) {
      const f = this.stack[this.stack.length - 1];
      if (f === undefined) return undefined;
      if (f.i >= f.n.nrEntries) {
        this.stack.pop();
        continue;
      }
      if (f.n.leaf) return { sub: false, key: f.n.key(f.i), dataBlock: dataBlockOf(f.n, f.i) };
      const [lo, hi] = childRange(f.n, f.i, f.hi);
      return { sub: true, block: f.n.u64Value(f.i, this.what), lo, hi };
    }
  }

  /** The top frame when it is a leaf with entries left (exhausted frames are popped). */
  leafTop(): Frame | undefined {
    if (this.root !== undefined) return undefined;
    for (;;) {
      const f = this.stack[this.stack.length - 1];
      if (f === undefined) return undefined;
      if (f.i < f.n.nrEntries) return f.n.leaf ? f : undefined;
      this.stack.pop();
    }
  }

  /** The top frame when it is an internal node with entries left (exhausted frames are popped). */
  innerTop(): Frame | undefined {
    if (this.root !== undefined) return undefined;
    for (;;) {
      const f = this.stack[this.stack.length - 1];
      if (f === undefined) return undefined;
      if (f.i < f.n.nrEntries) return f.n.leaf ? undefined : f;
      this.stack.pop();
    }
  }

  /** Moves past the head (a subtree is skipped whole). */
  advance(): void {
    if (this.root !== undefined) {
      this.root = undefined;
      return;
    }
    this.stack[this.stack.length - 1]!.i++;
  }

  /** Replaces the head subtree by its contents. */
  expand(h: Head & { sub: true }): void {
    this.advance();
    for (const f of this.stack) {
      if (f.n.block === h.block)
        throw new ThinshipError(
          'BAD_METADATA',
          `metadata block ${h.block}: ${this.what}: loop: block ${this.stack[this.stack.length - 1]!.n.block} points back to its ancestor ${h.block}`,
          { details: { block: h.block } },
        );
    }
    const depth = this.stack.length;
    if (depth >= MAX_DEPTH)
      throw new ThinshipError('BAD_METADATA', `metadata block ${h.block}: ${this.what}: tree deeper than ${MAX_DEPTH} levels (a loop?)`, {
        details: { block: h.block },
      });
    let buf = this.depthBufs[depth];
    if (buf === undefined) {
      buf = this.depthBufs[depth] = Buffer.allocUnsafeSlow(METADATA_BLOCK_BYTES);
      this.depthWords[depth] = wordsOf(buf);
    }
    const n = parseNode(this.r.readInto(h.block, buf, this.what), h.block, MAPPING_VALUE_BYTES, h.lo, h.hi, this.what, this.depthWords[depth]);
    this.stack.push({ n, i: 0, hi: h.hi });
  }
}

/** Plan runs per deltaWalkNext call at most (triples of a Float64Array: 48 KiB). */
const NATIVE_RUN_BATCH = 2048;

/**
 * The delta in the addon (deltaWalkStart/deltaWalkNext): walkDelta's walk
 * done in C, handing on plan runs (data, or unmap: PLAN_RUN_UNMAP in plan.ts) merged,
 * in increasing order, as triples in a Float64Array reused once onPlanRuns'
 * promise settles; no object per range or per node. Its faults are the
 * ThinshipErrors walkDelta gives (BAD_METADATA or IO_ERROR, naming the
 * block). Undefined when the addon lacks it (run walkDelta instead).
 */
export async function walkDeltaNative(
  r: BlockReader,
  left: { root: number; devId: number },
  right: { root: number; devId: number },
  onPlanRuns: (runs: Float64Array, count: number) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<DeltaStats | undefined> {
  const { deltaWalkStart, deltaWalkNext } = metadataAddon();
  if (deltaWalkStart === undefined || deltaWalkNext === undefined) return undefined;
  const walk = deltaWalkStart(r.fd, r.nrBlocks, r.path, left.root, left.devId, right.root, right.devId);
  const stats = new Float64Array(2);
  try {
    await runAddonWalk((out) => deltaWalkNext(walk, out, stats), new Float64Array(3 * NATIVE_RUN_BATCH), onPlanRuns, signal);
  } finally {
    r.blocksRead += stats[0]!;
  }
  return { sharedSubtreesSkipped: stats[1]! };
}

export interface DeltaStats {
  /** Subtrees both devices share, skipped unread. */
  sharedSubtreesSkipped: number;
}

/**
 * Walks the trees at `leftRoot` (base) and `rightRoot` (snapshot) together,
 * handing block ranges in increasing order to `onRanges` (awaited). Adjacent
 * blocks of one kind merge into one range. Blocks that are the same in both
 * (shared subtrees, and equal entries of leaves that differ) produce no range:
 * a plan skips them anyway, and handing on one object per unchanged entry of
 * every leaf a change touched cost more than the walk (168 000 of them for
 * 1000 changed blocks). So the ranges do not show where the devices end: ask
 * their trees (lastKey).
 */
export async function walkDelta(
  r: BlockReader,
  left: { root: number; devId: number },
  right: { root: number; devId: number },
  onRanges: (batch: DeltaRange[]) => void | Promise<void>,
): Promise<DeltaStats> {
  const A = new Cursor(r, left.root, `mapping tree of device ${left.devId}`);
  const B = new Cursor(r, right.root, `mapping tree of device ${right.devId}`);
  const stats: DeltaStats = { sharedSubtreesSkipped: 0 };
  let batch: DeltaRange[] = [];
  let kind: DeltaKind | undefined;
  let begin = 0,
    len = 0;
  /** Adds one block; the batch is handed on by the loop once it is full. */
  const block = (k: DeltaKind, key: number): void => {
    if (k === kind && key === begin + len) {
      len++;
      return;
    }
    if (kind !== undefined) batch.push({ kind, beginBlock: begin, lengthBlocks: len });
    kind = k;
    begin = key;
    len = 1;
  };
  const yielder = new LoopYielder();
  for (let step = 1; ; step++) {
    if (batch.length >= DELTA_BATCH) {
      const b = batch;
      batch = [];
      await onRanges(b);
    }
    if (step % 1024 === 0) await yielder.due();
    // Both heads in leaves: merge the two leaves' entries directly (the common case when
    // trees differ; no head objects).
    const fa = A.leafTop();
    const fb = B.leafTop();
    if (fa !== undefined && fb !== undefined) {
      const na = fa.n,
        nb = fb.n;
      while (fa.i < na.nrEntries && fb.i < nb.nrEntries && batch.length < DELTA_BATCH) {
        const ka = na.key(fa.i),
          kb = nb.key(fb.i);
        if (ka < kb) {
          block('left_only', ka);
          fa.i++;
        } else if (kb < ka) {
          block('right_only', kb);
          fb.i++;
        } else if (dataBlockOf(na, fa.i) !== dataBlockOf(nb, fb.i)) {
          block('different', ka);
          fa.i++;
          fb.i++;
        } else {
          // Same block; a leaf a write shadowed is its origin's copy but for the entries the write
          // changed, so skip the identical stretch from here at memcmp speed.
          const k = 1 + identicalRun(na, fa.i + 1, nb, fb.i + 1, Math.min(na.nrEntries - fa.i, nb.nrEntries - fb.i) - 1);
          fa.i += k;
          fb.i += k;
        }
      }
      continue;
    }
    // Both heads in internal nodes: skip the children both share (a node a write shadowed is its
    // origin's copy but for the children on the written paths) in one call, as the loop below
    // would one pair of heads at a time.
    const ia = fa === undefined ? A.innerTop() : undefined;
    const ib = ia !== undefined && fb === undefined ? B.innerTop() : undefined;
    if (ia !== undefined && ib !== undefined) {
      const k = identicalRun(ia.n, ia.i, ib.n, ib.i, Math.min(ia.n.nrEntries - ia.i, ib.n.nrEntries - ib.i));
      if (k > 0) {
        ia.i += k;
        ib.i += k;
        stats.sharedSubtreesSkipped += k;
        continue;
      }
    }
    const a = A.head();
    const b = B.head();
    if (a === undefined && b === undefined) break;
    if (a?.sub && b?.sub && a.block === b.block) {
      A.advance();
      B.advance();
      stats.sharedSubtreesSkipped++;
      continue;
    }
    const la = a === undefined ? KEY_END : a.sub ? a.lo : a.key;
    const lb = b === undefined ? KEY_END : b.sub ? b.lo : b.key;
    if (a && !a.sub && la < lb) {
      block('left_only', a.key);
      A.advance();
      continue;
    }
    if (b && !b.sub && lb < la) {
      block('right_only', b.key);
      B.advance();
      continue;
    }
    if (a && b && !a.sub && !b.sub) {
      // Equal keys.
      if (a.dataBlock !== b.dataBlock) block('different', a.key);
      A.advance();
      B.advance();
      continue;
    }
    // A subtree starts at or before the other head: read it. Both subtrees from the same
    // key: read the wider first (the narrower may be one of its children), both if alike.
    if (a?.sub && b?.sub && la === lb) {
      if (a.hi >= b.hi) A.expand(a);
      if (b.hi >= a.hi) B.expand(b);
    } else if (a?.sub && la <= lb) {
      A.expand(a);
    } else {
      B.expand(b as Head & { sub: true });
    }
  }
  if (kind !== undefined) batch.push({ kind, beginBlock: begin, lengthBlocks: len });
  if (batch.length > 0) await onRanges(batch);
  return stats;
}
