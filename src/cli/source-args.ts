/**
 * Turns `[BASE] SNAP` plus flags into a SourceSpec: LVM names (vg/lv,
 * /dev/vg/lv), or device ids of an offline pool given by --pool-metadata and
 * --pool-data.
 */
import { ThinshipError } from '../errors.js';
import type { SourceSpec } from '../thin/planner.js';
import type { RecordChecksum } from '../stream/integrity.js';

export interface SourceFlags {
  poolMetadata?: string;
  poolData?: string;
  volumeSize?: string;
  allowLive?: boolean;
}

function devId(s: string, what: string): number {
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)))
    throw new ThinshipError('USAGE', `${what} "${s}" is not a thin device id (with --pool-metadata, volumes are named by their device id, e.g. 1)`);
  return Number(s);
}

export function parseByteCount(s: string, what: string): number {
  const m = /^(\d+)([KMGT]i?B?|[kmgt]|B)?$/.exec(s.trim());
  if (!m) throw new ThinshipError('USAGE', `${what} "${s}" is not a size (examples: 1073741824, 512M, 4G)`);
  const mult: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  const n = Number(m[1]) * (mult[(m[2] ?? '').charAt(0).toUpperCase()] ?? 1);
  if (!Number.isSafeInteger(n)) throw new ThinshipError('USAGE', `${what} "${s}" is too large`);
  return n;
}

export function sourceSpecOf(names: string[], f: SourceFlags): SourceSpec {
  if (names.length < 1 || names.length > 2) throw new ThinshipError('USAGE', 'give one snapshot for a full send, or two (base first) for an incremental');
  const [a, b] = names;
  const snap = (b ?? a)!;
  const base = b === undefined ? undefined : a;
  if (f.poolMetadata !== undefined || f.poolData !== undefined) {
    if (!f.poolMetadata || !f.poolData) throw new ThinshipError('USAGE', 'an offline pool needs both --pool-metadata FILE and --pool-data FILE');
    return {
      kind: 'offline',
      metadataPath: f.poolMetadata,
      dataPath: f.poolData,
      snapDevId: devId(snap, 'SNAP'),
      baseDevId: base === undefined ? undefined : devId(base, 'BASE'),
      volumeSizeBytes: f.volumeSize === undefined ? undefined : parseByteCount(f.volumeSize, '--volume-size'),
    };
  }
  if (f.volumeSize !== undefined) throw new ThinshipError('USAGE', '--volume-size is only for offline pools (LVM gives the size)');
  return { kind: 'lvm', snap, base, allowLive: f.allowLive };
}

/** `--checksum ALGO`: the per-DATA checksum of a send (blake3 or sha256), undefined when not given (the sender's default). */
export function parseChecksumFlag(s: string | undefined): RecordChecksum | undefined {
  if (s === undefined) return undefined;
  if (s === 'blake3' || s === 'sha256') return s;
  throw new ThinshipError('USAGE', `--checksum must be blake3 or sha256, not "${s}" (a stream without checksums: --no-extensions, pipe mode only)`);
}

/** `--bwlimit RATE`: bytes per second (K/M/G suffixes), above zero. */
export function parseBandwidthFlag(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = parseByteCount(s.replace(/\/s$/, ''), '--bwlimit');
  if (n < 1024) throw new ThinshipError('USAGE', `--bwlimit ${s}: at least 1K (bytes per second)`);
  return n;
}
