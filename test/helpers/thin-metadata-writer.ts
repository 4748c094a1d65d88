/**
 * Writes thin-pool metadata the way the kernel shapes it, for tests: a
 * snapshot starts by sharing its origin's mapping tree root, and each later
 * change shadows (copies) only the path from the root to the leaf it touches,
 * once per node (what dm-transaction-manager does within a transaction).
 * thin_restore (0.9) cannot make such trees: it builds every device's tree
 * separately, so nothing is shared.
 *
 * The layout follows the kernel's (drivers/md/dm-thin-metadata.c,
 * persistent-data/dm-btree-internal.h); see docs/thin-metadata.md. Space maps
 * are not written (their roots are zero): read such an image through its
 * metadata snapshot (held root), as `thin_dump -m` / `thin_delta -m` do, whose
 * superblock copy has no space map roots on a real pool either.
 */
import { writeFileSync } from 'node:fs';
import { blockChecksum } from '../../src/thin/metadata/crc32c.js';

const BLOCK = 4096;
const HEADER = 32;
const BTREE_XOR = 121107;
const SB_XOR = 160774;

interface Node {
  block: number;
  leaf: boolean;
  keys: number[];
  /** Leaf values (valueSize bytes each) or, in internal nodes, child blocks. */
  values: (Buffer | number)[];
  valueSize: number;
}

export const maxEntries = (valueSize: number): number => {
  const n = Math.floor((BLOCK - HEADER) / (8 + valueSize));
  return n - (n % 3);
};

export function u64Value(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

export const blockTime = (dataBlock: number, time: number): Buffer => u64Value((BigInt(dataBlock) << 24n) | BigInt(time));

export function deviceDetails(d: { mappedBlocks: number; transaction: number; creationTime: number; snapTime: number }): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(BigInt(d.mappedBlocks), 0);
  b.writeBigUInt64LE(BigInt(d.transaction), 8);
  b.writeUInt32LE(d.creationTime, 16);
  b.writeUInt32LE(d.snapTime, 20);
  return b;
}

export class MetadataImage {
  readonly nodes = new Map<number, Node>();
  /** Blocks 0 (superblock) and 1 (held superblock copy) are reserved. */
  private next = 2;
  /** Nodes made (or already shadowed) in the current transaction: changed in place. */
  private owned = new Set<number>();

  private alloc(leaf: boolean, valueSize: number, keys: number[], values: (Buffer | number)[]): Node {
    const n: Node = { block: this.next++, leaf, keys, values, valueSize };
    this.nodes.set(n.block, n);
    this.owned.add(n.block);
    return n;
  }

  /** Starts a new transaction: every existing node is shared from now on (a snapshot was taken). */
  commit(): void {
    this.owned = new Set();
  }

  /**
   * A tree of sorted entries, bottom up, spread evenly over nodes of at most
   * `perNode` entries (the thin tools want every non-root node at least a third
   * full, as the kernel keeps them; the default leaves a third free for set()).
   */
  build(
    entries: [number, Buffer][],
    valueSize: number,
    perNode = Math.floor((maxEntries(valueSize) * 2) / 3),
    perInternal = Math.floor((maxEntries(8) * 2) / 3),
  ): number {
    const spread = <T>(items: T[], per: number): T[][] => {
      const nodes = Math.max(1, Math.ceil(items.length / per));
      const out: T[][] = [];
      for (let i = 0; i < nodes; i++) out.push(items.slice(Math.floor((i * items.length) / nodes), Math.floor(((i + 1) * items.length) / nodes)));
      return out;
    };
    let level = spread(entries, perNode).map((c) =>
      this.alloc(
        true,
        valueSize,
        c.map((e) => e[0]),
        c.map((e) => e[1]),
      ),
    );
    while (level.length > 1) {
      level = spread(level, perInternal).map((c) =>
        this.alloc(
          false,
          valueSize,
          c.map((n) => n.keys[0]!),
          c.map((n) => n.block),
        ),
      );
    }
    return level[0]!.block;
  }

  private shadow(block: number): Node {
    const n = this.nodes.get(block)!;
    if (this.owned.has(block)) return n;
    return this.alloc(n.leaf, n.valueSize, [...n.keys], [...n.values]);
  }

  /**
   * Sets (value) or removes (undefined) `key` in the tree at `root`, shadowing
   * the path to its leaf; returns the (possibly new) root. Leaves never split:
   * build trees with room (the default fill leaves a third free).
   */
  set(root: number, key: number, value: Buffer | undefined): number {
    const newRoot = this.shadow(root);
    let n = newRoot;
    while (!n.leaf) {
      let i = 0;
      while (i + 1 < n.keys.length && n.keys[i + 1]! <= key) i++;
      if (key < n.keys[0]!) {
        if (value === undefined) return newRoot.block; // not in the tree
        n.keys[0] = key;
      }
      const c = this.shadow(n.values[i] as number);
      n.values[i] = c.block;
      n = c;
    }
    let i = 0;
    while (i < n.keys.length && n.keys[i]! < key) i++;
    if (n.keys[i] === key) {
      if (value === undefined) {
        n.keys.splice(i, 1);
        n.values.splice(i, 1);
      } else n.values[i] = value;
    } else if (value !== undefined) {
      if (n.keys.length >= maxEntries(n.valueSize)) throw new Error(`test writer: leaf ${n.block} is full (build with room)`);
      n.keys.splice(i, 0, key);
      n.values.splice(i, 0, value);
    }
    return newRoot.block;
  }

  /** Every (key, value) of a tree in order. */
  entries(root: number): [number, Buffer][] {
    const n = this.nodes.get(root)!;
    if (n.leaf) return n.keys.map((k, i) => [k, n.values[i] as Buffer]);
    return n.values.flatMap((c) => this.entries(c as number));
  }

  /** Blocks reachable from `root`. */
  reachable(root: number, into = new Set<number>()): Set<number> {
    into.add(root);
    const n = this.nodes.get(root)!;
    if (!n.leaf) for (const c of n.values) this.reachable(c as number, into);
    return into;
  }

  nodeBytes(n: Node): Buffer {
    const b = Buffer.alloc(BLOCK);
    const max = maxEntries(n.valueSize);
    b.writeUInt32LE(n.leaf ? 2 : 1, 4);
    b.writeBigUInt64LE(BigInt(n.block), 8);
    b.writeUInt32LE(n.keys.length, 16);
    b.writeUInt32LE(max, 20);
    b.writeUInt32LE(n.leaf ? n.valueSize : 8, 24);
    n.keys.forEach((k, i) => b.writeBigUInt64LE(BigInt(k), HEADER + 8 * i));
    const vs = n.leaf ? n.valueSize : 8;
    n.values.forEach((v, i) => (typeof v === 'number' ? u64Value(v) : v).copy(b, HEADER + 8 * max + vs * i));
    b.writeUInt32LE(blockChecksum(b, BTREE_XOR), 0);
    return b;
  }

  /**
   * The whole image: superblock at 0 whose held root is block 1, a copy of it
   * (space map roots zero, as the kernel leaves them) at 1, then the nodes.
   * Returns the file's size in blocks.
   */
  write(
    path: string,
    sb: { mappingRoot: number; detailsRoot: number; dataBlockSizeSectors: number; nrDataBlocks: number; time: number; transaction: number; version?: number },
  ): number {
    const nrBlocks = this.next + 16;
    const img = Buffer.alloc(nrBlocks * BLOCK);
    const superblock = (location: number, heldRoot: number, nrDataBlocks: number): Buffer => {
      const b = Buffer.alloc(BLOCK);
      b.writeUInt32LE(0, 4);
      b.writeBigUInt64LE(BigInt(location), 8);
      b.writeBigUInt64LE(27022010n, 32);
      b.writeUInt32LE(sb.version ?? 2, 40);
      b.writeUInt32LE(sb.time, 44);
      b.writeBigUInt64LE(BigInt(sb.transaction), 48);
      b.writeBigUInt64LE(BigInt(heldRoot), 56);
      b.writeBigUInt64LE(BigInt(nrDataBlocks), 64);
      b.writeBigUInt64LE(BigInt(sb.mappingRoot), 320);
      b.writeBigUInt64LE(BigInt(sb.detailsRoot), 328);
      b.writeUInt32LE(sb.dataBlockSizeSectors, 336);
      b.writeUInt32LE(8, 340);
      b.writeBigUInt64LE(BigInt(nrBlocks), 344);
      b.writeUInt32LE(blockChecksum(b, SB_XOR), 0);
      return b;
    };
    superblock(0, 1, sb.nrDataBlocks).copy(img, 0);
    superblock(1, 0, 0).copy(img, BLOCK);
    for (const n of this.nodes.values()) this.nodeBytes(n).copy(img, n.block * BLOCK);
    writeFileSync(path, img);
    return nrBlocks;
  }
}

/** Re-checksums a btree node or superblock after a test edited it (so another check than the checksum fires). */
export function reChecksum(block: Buffer, kind: 'node' | 'superblock'): void {
  block.writeUInt32LE(blockChecksum(block, kind === 'node' ? BTREE_XOR : SB_XOR), 0);
}
