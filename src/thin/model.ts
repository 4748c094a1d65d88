/**
 * The typed model of thin-pool metadata, separate from the XML (as
 * thin-provisioning-tools keeps ir.rs apart from xml.rs). Only thin/xml/elements.ts
 * knows attribute names; everything else works with these types.
 *
 * Units are in the names: *Block(s) = pool data blocks (chunks),
 * *Sectors = 512-byte sectors, *Bytes = bytes.
 */

export const SECTOR_BYTES = 512;

export interface Superblock {
  uuid: string;
  time: number;
  transaction: number;
  /** Pool block (chunk) size in 512-byte sectors: 128 = 64 KiB. */
  dataBlockSizeSectors: number;
  /** 0 when dumped from a metadata snapshot (-m). */
  nrDataBlocks: number;
  /** thin_dump has these (flags only in newer tools); thin_delta has neither. */
  version?: number;
  flags?: number;
}

export interface ThinDevice {
  devId: number;
  mappedBlocks: number;
  transaction: number;
  creationTime: number;
  snapTime: number;
}

/** A run of `lengthBlocks` consecutive origin blocks mapped to consecutive data blocks. */
export interface Mapping {
  originBlock: number;
  dataBlock: number;
  lengthBlocks: number;
  time: number;
}

export type DeltaKind = 'same' | 'different' | 'left_only' | 'right_only';

export interface DeltaRange {
  kind: DeltaKind;
  beginBlock: number;
  lengthBlocks: number;
}

/** One operation of a plan, in bytes on the volume. */
export interface PlanOp {
  kind: 'data' | 'unmap';
  offsetBytes: number;
  lengthBytes: number;
}

export interface PlanTotals {
  /** Bytes of DATA operations (to read and send). */
  dataBytes: number;
  /** Bytes of UNMAP operations (to discard on the target). */
  unmapBytes: number;
  dataOps: number;
  unmapOps: number;
  /** Size of the volume being sent, in bytes (from lvs, or from the mappings for offline pools when not given). */
  volumeSizeBytes: number;
  /** Pool block size in bytes. */
  blockSizeBytes: number;
}
