/**
 * Pure range math for "make this byte range read back as zeros" on a block
 * device: which part may be discarded, which part needs a write-zeroes, and
 * which sub-sector edges need plain writes of zeros.
 *
 *   offset                                                            end
 *   |-- write --|---- zeroOut ----|======== discard ========|-- zeroOut --|-- write --|
 *               ^ logical block    ^ discard-granularity aligned          ^ logical block
 *
 * Discard is only planned when it is known to zero (see block-info.ts);
 * otherwise the whole logical-block-aligned part is a zeroOut.
 */

export type ZeroPieceKind = 'write' | 'zeroOut' | 'discard';

export interface ZeroPiece {
  kind: ZeroPieceKind;
  offsetBytes: number;
  lengthBytes: number;
}

export interface ZeroPlanLimits {
  logicalBlockBytes: number;
  /** 0: no discard. */
  discardGranularityBytes: number;
  /** Where granularity-aligned units begin, relative to the device start (partitions). */
  discardAlignmentBytes?: number;
  /** Discard of aligned units is known to read back as zeros. */
  discardZeroes: boolean;
}

function roundUp(x: number, unit: number, base = 0): number {
  return base + Math.ceil((x - base) / unit) * unit;
}

function roundDown(x: number, unit: number, base = 0): number {
  return base + Math.floor((x - base) / unit) * unit;
}

/** Splits [offsetBytes, offsetBytes+lengthBytes) into pieces in ascending order, none empty. */
export function planZeroRange(offsetBytes: number, lengthBytes: number, limits: ZeroPlanLimits): ZeroPiece[] {
  const pieces: ZeroPiece[] = [];
  const push = (kind: ZeroPieceKind, from: number, to: number): void => {
    if (to > from) pieces.push({ kind, offsetBytes: from, lengthBytes: to - from });
  };
  const end = offsetBytes + lengthBytes;
  const lbs = limits.logicalBlockBytes;
  const blockStart = roundUp(offsetBytes, lbs);
  const blockEnd = roundDown(end, lbs);
  if (blockStart >= blockEnd) {
    // No whole logical block inside: the range lies within one or two blocks.
    push('write', offsetBytes, end);
    return pieces;
  }
  push('write', offsetBytes, blockStart);
  const gran = limits.discardGranularityBytes;
  if (limits.discardZeroes && gran > 0) {
    const base = limits.discardAlignmentBytes ?? 0;
    // Granularity is a multiple of the logical block size, so these stay block-aligned.
    const discardStart = roundUp(blockStart, gran, base);
    const discardEnd = roundDown(blockEnd, gran, base);
    if (discardStart < discardEnd) {
      push('zeroOut', blockStart, discardStart);
      push('discard', discardStart, discardEnd);
      push('zeroOut', discardEnd, blockEnd);
    } else {
      push('zeroOut', blockStart, blockEnd);
    }
  } else {
    push('zeroOut', blockStart, blockEnd);
  }
  push('write', blockEnd, end);
  return pieces;
}
