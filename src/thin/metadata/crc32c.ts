/**
 * CRC-32C (Castagnoli), as persistent-data checksums its blocks: the kernel's
 * dm_bm_checksum() is `crc32c(~0, data, len) ^ xor`, where the kernel's
 * crc32c() returns the register without the final inversion.
 *
 * The native addon's crc32c (SSE4.2's crc32 instruction, native/thinship_device.c)
 * does a 4 KiB block in well under a microsecond; this file's slicing-by-8 in
 * JavaScript (several microseconds a block, 15 % of a full plan's CPU when it
 * was the only one) is the fallback when the addon is not built, and the
 * reference the unit test checks the addon against.
 */
import { metadataAddon } from './addon.js';

const POLY = 0x82f63b78; // reflected Castagnoli polynomial

const T = ((): Uint32Array[] => {
  const t = [0, 1, 2, 3, 4, 5, 6, 7].map(() => new Uint32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0]![i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) t[s]![i] = (t[0]![t[s - 1]![i]! & 0xff]! ^ (t[s - 1]![i]! >>> 8)) >>> 0;
  }
  return t;
})();

/** The CRC register after `b[start, end)` from `seed`, with no final inversion (the kernel's crc32c()); in JavaScript. */
export function crc32cRawJs(seed: number, b: Uint8Array, start = 0, end = b.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = T as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = seed >>> 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    c ^= b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    c = t7[c & 0xff]! ^ t6[(c >>> 8) & 0xff]! ^ t5[(c >>> 16) & 0xff]! ^ t4[c >>> 24]! ^ t3[b[i + 4]!]! ^ t2[b[i + 5]!]! ^ t1[b[i + 6]!]! ^ t0[b[i + 7]!]!;
  }
  for (; i < end; i++) c = t0[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

type CrcFn = (seed: number, b: Uint8Array, start: number, end: number) => number;

/** The addon's crc32c, or undefined when the addon is not built. */
export function nativeCrc32c(): CrcFn | undefined {
  return metadataAddon().crc32c;
}

/** Chosen at the first checksum, not at import: commands that read no metadata do not load the addon. */
let impl: CrcFn | undefined;

/** The CRC register after `b[start, end)` from `seed`, with no final inversion (the kernel's crc32c()). */
function crc32cRaw(seed: number, b: Uint8Array, start = 0, end = b.length): number {
  return (impl ??= nativeCrc32c() ?? crc32cRawJs)(seed >>> 0, b, start, end);
}

/** Standard CRC-32C (init ~0, final inversion): for the test vector "123456789" -> 0xe3069283. */
export function crc32c(b: Uint8Array): number {
  return ~crc32cRaw(0xffffffff, b) >>> 0;
}

/** persistent-data's block checksum: everything after the 4-byte csum field, xor the block type's salt. */
export function blockChecksum(block: Uint8Array, salt: number): number {
  return (crc32cRaw(0xffffffff, block, 4, block.length) ^ salt) >>> 0;
}
