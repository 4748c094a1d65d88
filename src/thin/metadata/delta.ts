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
 * same; different data blocks = different; only in the base = left_only; only
 * in the snapshot = right_only (what thin_delta reports; time is not compared).
 */
import { ThinshipError } from '../../errors.js';
import type { DeltaKind, DeltaRange } from '../model.js';
import type { BlockReader } from './block-reader.js';
import { type BtreeNode, KEY_END, MAX_DEPTH, childRange, readNode } from './btree.js';
import { MAPPING_VALUE_BYTES } from './reader.js';

const DELTA_BATCH = 4096;

interface Frame {
  n: BtreeNode; i: number; hi: number;
  /** Its remaining children were read ahead (once, when the first of them was expanded). */
  readAhead?: boolean;
}

type Head =
  | { sub: true; block: number; lo: number; hi: number }
  | { sub: false; key: number; dataBlock: number };

/** The data block of leaf value i: the upper 40 bits of `data_block << 24 | time`. */
function dataBlockOf(n: BtreeNode, i: number): number {
  const off = n.valueOffset(i);
  return n.buf.readUInt32LE(off + 4) * 256 + (n.buf.readUInt32LE(off) >>> 24);
}

class Cursor {
  private readonly stack: Frame[] = [];
  private root: number | undefined;
  /** The other tree's cursor: its pending children are not read ahead here (they are probably shared). */
  peer: Cursor | undefined;

  constructor(private readonly r: BlockReader, root: number, private readonly what: string) {
    this.root = root;
  }

  /** The next item, or undefined at the end. */
  head(): Head | undefined {
    if (this.root !== undefined) return { sub: true, block: this.root, lo: 0, hi: KEY_END };
    for (;;) {
      const f = this.stack[this.stack.length - 1];
      if (f === undefined) return undefined;
      if (f.i >= f.n.nrEntries) { this.stack.pop(); continue; }
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

  /** Moves past the head (a subtree is skipped whole). */
  advance(): void {
    if (this.root !== undefined) { this.root = undefined; return; }
    this.stack[this.stack.length - 1]!.i++;
  }

  /** Replaces the head subtree by its contents. */
  async expand(h: Head & { sub: true }): Promise<void> {
    this.advance();
    const parent = this.stack[this.stack.length - 1];
    if (parent !== undefined && !parent.readAhead) {
      // Now that both walks have reached this level, read ahead the siblings the other
      // tree does not point at (those will be read); shared ones are probably skipped.
      parent.readAhead = true;
      const theirs = this.peer?.pendingChildren() ?? new Set<number>();
      const next: number[] = [];
      for (let i = parent.i; i < parent.n.nrEntries; i++) {
        const c = parent.n.u64Value(i, this.what);
        if (!theirs.has(c)) next.push(c);
      }
      this.r.prefetch(next);
    }
    for (const f of this.stack) {
      if (f.n.block === h.block) throw new ThinshipError('BAD_METADATA', `metadata block ${h.block}: ${this.what}: loop: block ${this.stack[this.stack.length - 1]!.n.block} points back to its ancestor ${h.block}`, { details: { block: h.block } });
    }
    if (this.stack.length >= MAX_DEPTH) throw new ThinshipError('BAD_METADATA', `metadata block ${h.block}: ${this.what}: tree deeper than ${MAX_DEPTH} levels (a loop?)`, { details: { block: h.block } });
    const n = await readNode(this.r, h.block, MAPPING_VALUE_BYTES, h.lo, h.hi, this.what);
    this.stack.push({ n, i: 0, hi: h.hi });
  }

  /** Children not yet visited of the internal nodes on this cursor's path. */
  pendingChildren(): Set<number> {
    const out = new Set<number>();
    if (this.root !== undefined) out.add(this.root);
    for (const f of this.stack) {
      if (f.n.leaf) continue;
      for (let i = f.i; i < f.n.nrEntries; i++) out.add(f.n.u64Value(i, this.what));
    }
    return out;
  }
}

export interface DeltaStats {
  /** Subtrees both devices share, skipped unread. */
  sharedSubtreesSkipped: number;
}

/**
 * Walks the trees at `leftRoot` (base) and `rightRoot` (snapshot) together,
 * handing block ranges in increasing order to `onRanges` (awaited). Adjacent
 * blocks of one kind merge into one range; shared subtrees produce no range.
 */
export async function walkDelta(
  r: BlockReader, left: { root: number; devId: number }, right: { root: number; devId: number },
  onRanges: (batch: DeltaRange[]) => void | Promise<void>,
): Promise<DeltaStats> {
  const A = new Cursor(r, left.root, `mapping tree of device ${left.devId}`);
  const B = new Cursor(r, right.root, `mapping tree of device ${right.devId}`);
  A.peer = B;
  B.peer = A;
  const stats: DeltaStats = { sharedSubtreesSkipped: 0 };
  let batch: DeltaRange[] = [];
  let kind: DeltaKind | undefined;
  let begin = 0, len = 0;
  /** Adds one block; the batch is handed on by the loop once it is full. */
  const block = (k: DeltaKind, key: number): void => {
    if (k === kind && key === begin + len) { len++; return; }
    if (kind !== undefined) batch.push({ kind, beginBlock: begin, lengthBlocks: len });
    kind = k; begin = key; len = 1;
  };
  for (;;) {
    if (batch.length >= DELTA_BATCH) { const b = batch; batch = []; await onRanges(b); }
    // Both heads in leaves: merge the two leaves' entries directly (the common case when
    // trees differ; no head objects).
    const fa = A.leafTop();
    const fb = B.leafTop();
    if (fa !== undefined && fb !== undefined) {
      const na = fa.n, nb = fb.n;
      while (fa.i < na.nrEntries && fb.i < nb.nrEntries && batch.length < DELTA_BATCH) {
        const ka = na.key(fa.i), kb = nb.key(fb.i);
        if (ka < kb) { block('left_only', ka); fa.i++; }
        else if (kb < ka) { block('right_only', kb); fb.i++; }
        else {
          block(dataBlockOf(na, fa.i) === dataBlockOf(nb, fb.i) ? 'same' : 'different', ka);
          fa.i++; fb.i++;
        }
      }
      continue;
    }
    const a = A.head();
    const b = B.head();
    if (a === undefined && b === undefined) break;
    if (a?.sub && b?.sub && a.block === b.block) {
      A.advance(); B.advance();
      stats.sharedSubtreesSkipped++;
      continue;
    }
    const la = a === undefined ? KEY_END : a.sub ? a.lo : a.key;
    const lb = b === undefined ? KEY_END : b.sub ? b.lo : b.key;
    if (a && !a.sub && la < lb) { block('left_only', a.key); A.advance(); continue; }
    if (b && !b.sub && lb < la) { block('right_only', b.key); B.advance(); continue; }
    if (a && b && !a.sub && !b.sub) {
      // Equal keys.
      block(a.dataBlock === b.dataBlock ? 'same' : 'different', a.key);
      A.advance(); B.advance();
      continue;
    }
    // A subtree starts at or before the other head: read it. Both subtrees from the same
    // key: read the wider first (the narrower may be one of its children), both if alike.
    if (a?.sub && b?.sub && la === lb) {
      if (a.hi >= b.hi) await A.expand(a);
      if (b.hi >= a.hi) await B.expand(b);
    } else if (a?.sub && la <= lb) {
      await A.expand(a);
    } else {
      await B.expand(b as Head & { sub: true });
    }
  }
  if (kind !== undefined) batch.push({ kind, beginBlock: begin, lengthBlocks: len });
  if (batch.length > 0) await onRanges(batch);
  return stats;
}
