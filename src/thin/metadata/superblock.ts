/**
 * The thin-pool superblock (struct thin_disk_superblock in the kernel's
 * drivers/md/dm-thin-metadata.c; thin-provisioning-tools src/thin/superblock.rs).
 * Little endian; offsets in bytes:
 *
 *     0 csum u32           crc32c of bytes 4..4095, xor 160774
 *     4 flags u32          bit 0: NEEDS_CHECK
 *     8 blocknr u64        this block's own number (0)
 *    16 uuid [16]
 *    32 magic u64         27022010
 *    40 version u32       1 or 2
 *    44 time u32
 *    48 trans_id u64
 *    56 held_root u64     metadata snapshot: block of a superblock copy, 0 = none
 *    64 data_space_map_root [128]   (its first u64: nr_blocks of the data device)
 *   192 metadata_space_map_root [128]
 *   320 data_mapping_root u64
 *   328 device_details_root u64
 *   336 data_block_size u32     sectors
 *   340 metadata_block_size u32 sectors (8: 4 KiB)
 *   344 metadata_nr_blocks u64
 *   352 compat_flags u32, 356 compat_ro_flags u32, 360 incompat_flags u32
 */
import { ThinshipError } from '../../errors.js';
import { blockChecksum } from './crc32c.js';
import { METADATA_BLOCK_BYTES } from './block-reader.js';
import { HOST_LITTLE_ENDIAN } from './btree.js';

const SUPERBLOCK_MAGIC = 27022010;
const SUPERBLOCK_CSUM_XOR = 160774;
export const SUPERBLOCK_LOCATION = 0;
/** Versions this reader knows (the kernel writes 2; 1 has the same layout). */
const KNOWN_VERSIONS: readonly number[] = [1, 2];
const FLAG_NEEDS_CHECK = 1;
/** Flags this reader understands; any other bit set means a format it does not know. */
const KNOWN_FLAGS = FLAG_NEEDS_CHECK;
const METADATA_BLOCK_SECTORS = METADATA_BLOCK_BYTES / 512;

export interface DiskSuperblock {
  /** Block it was read from (0, or the held root). */
  location: number;
  flags: number;
  uuid: Buffer;
  version: number;
  time: number;
  transactionId: number;
  heldRoot: number;
  /** nr_blocks of the data space map root; 0 in a metadata snapshot's copy (the kernel wipes its space map roots). */
  nrDataBlocks: number;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  dataBlockSizeSectors: number;
  metadataBlockSizeSectors: number;
  metadataNrBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
  incompatFlags: number;
}

/** A little-endian u64 that must be a safe integer (block numbers, counters). */
export function u64(b: Buffer, off: number, what: string): number {
  const lo = b.readUInt32LE(off);
  const hi = b.readUInt32LE(off + 4);
  if (hi > 0x1fffff) throw new ThinshipError('BAD_METADATA', `${what} is ${b.readBigUInt64LE(off)}, beyond the largest integer this program handles`);
  return hi * 0x1_0000_0000 + lo;
}

/**
 * Parses and checks a superblock read from block `location`: checksum, magic,
 * own block number. Version and feature flags are reported, not checked here
 * (see unknownFormat): `auto` falls back to the thin tools on what it does not know.
 */
export function parseSuperblock(b: Buffer, location: number, path: string): DiskSuperblock {
  const where = `superblock at metadata block ${location} of ${path}`;
  const magic = u64(b, 32, `${where}: magic`);
  if (magic !== SUPERBLOCK_MAGIC)
    throw new ThinshipError('BAD_METADATA', `${where}: bad magic ${magic} (a thin-pool superblock has ${SUPERBLOCK_MAGIC}): not thin-pool metadata`, {
      details: { block: location },
    });
  const want = blockChecksum(b, SUPERBLOCK_CSUM_XOR);
  const have = b.readUInt32LE(0);
  if (want !== have)
    throw new ThinshipError('BAD_METADATA', `${where}: checksum mismatch (stored ${have}, computed ${want})`, { details: { block: location } });
  const blocknr = u64(b, 8, `${where}: blocknr`);
  if (blocknr !== location) throw new ThinshipError('BAD_METADATA', `${where}: says it is block ${blocknr}`, { details: { block: location } });
  return {
    location,
    flags: b.readUInt32LE(4),
    uuid: Buffer.from(b.subarray(16, 32)),
    version: b.readUInt32LE(40),
    time: b.readUInt32LE(44),
    transactionId: u64(b, 48, `${where}: trans_id`),
    heldRoot: u64(b, 56, `${where}: held_root`),
    nrDataBlocks: u64(b, 64, `${where}: data space map nr_blocks`),
    dataMappingRoot: u64(b, 320, `${where}: data_mapping_root`),
    deviceDetailsRoot: u64(b, 328, `${where}: device_details_root`),
    dataBlockSizeSectors: b.readUInt32LE(336),
    metadataBlockSizeSectors: b.readUInt32LE(340),
    metadataNrBlocks: u64(b, 344, `${where}: metadata_nr_blocks`),
    compatFlags: b.readUInt32LE(352),
    compatRoFlags: b.readUInt32LE(356),
    incompatFlags: b.readUInt32LE(360),
  };
}

/**
 * Why this reader cannot read a superblock it parsed, or undefined when it can:
 * an unknown version, flag or read-only/incompatible feature, or a block size
 * other than 4 KiB. (Compatible features may be ignored by definition.)
 */
export function unknownFormat(sb: DiskSuperblock): string | undefined {
  if (!HOST_LITTLE_ENDIAN) return 'a big-endian host (the native reader reads little-endian words in place)';
  if (!KNOWN_VERSIONS.includes(sb.version)) return `metadata version ${sb.version} (this reader knows ${KNOWN_VERSIONS.join(', ')})`;
  if ((sb.flags & ~KNOWN_FLAGS) !== 0) return `superblock flags 0x${sb.flags.toString(16)}`;
  if (sb.compatRoFlags !== 0) return `read-only-compatible feature flags 0x${sb.compatRoFlags.toString(16)}`;
  if (sb.incompatFlags !== 0) return `incompatible feature flags 0x${sb.incompatFlags.toString(16)}`;
  if (sb.metadataBlockSizeSectors !== METADATA_BLOCK_SECTORS)
    return `metadata block size of ${sb.metadataBlockSizeSectors} sectors (this reader knows ${METADATA_BLOCK_SECTORS})`;
  if (sb.dataBlockSizeSectors === 0) return 'data block size 0';
  return undefined;
}
