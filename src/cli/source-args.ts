/**
 * Turns `[BASE] SNAP` plus flags into a SourceSpec: LVM names (vg/lv,
 * /dev/vg/lv), or device ids of an offline pool given by --pool-metadata and
 * --pool-data.
 */
import { ThinshipError, abortError } from '../errors.js';
import { planSend, type PlanOptions, type SendPlan, type SourceSpec } from '../thin/planner.js';
import { withStopSignals } from './signals.js';
import { checkMetadataReaderChoice } from '../thin/metadata/native-plan.js';

export interface SourceFlags { poolMetadata?: string; poolData?: string; volumeSize?: string; allowLive?: boolean }

function devId(s: string, what: string): number {
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new ThinshipError('USAGE', `${what} "${s}" is not a thin device id (with --pool-metadata, volumes are named by their device id, e.g. 1)`);
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
      kind: 'offline', metadataPath: f.poolMetadata, dataPath: f.poolData,
      snapDevId: devId(snap, 'SNAP'), baseDevId: base === undefined ? undefined : devId(base, 'BASE'),
      volumeSizeBytes: f.volumeSize === undefined ? undefined : parseByteCount(f.volumeSize, '--volume-size'),
    };
  }
  if (f.volumeSize !== undefined) throw new ThinshipError('USAGE', '--volume-size is only for offline pools (LVM gives the size)');
  return { kind: 'lvm', snap, base, allowLive: f.allowLive };
}

export interface PlanFlags { maxOpBytes?: string; metadataReader?: string }

/** A warning from a library, for the person at the terminal: one "thinship: ..." line on stderr. */
function warnOnStderr(message: string): void {
  process.stderr.write(`thinship: ${message}\n`);
}

/**
 * The planning options of plan and send: the flags, and what the environment
 * sets (THINSHIP_METADATA_READER, THINSHIP_LOCK_DIR), read here at the edge
 * rather than in the libraries.
 */
function planOptionsOf(f: PlanFlags, more: PlanOptions = {}): PlanOptions {
  return {
    maxOpBytes: f.maxOpBytes === undefined ? undefined : parseByteCount(f.maxOpBytes, '--max-op-bytes'),
    metadataReader: checkMetadataReaderChoice(f.metadataReader, process.env.THINSHIP_METADATA_READER),
    lockDir: process.env.THINSHIP_LOCK_DIR || undefined,
    warn: warnOnStderr,
    ...more,
  };
}

/**
 * planSend for a command: SIGINT/SIGTERM/SIGHUP while it plans stop the thin
 * tool, release the metadata snapshot and end the command with 128 + the
 * signal number; afterwards signals have their default effect again.
 */
export async function planForCommand(spec: SourceSpec, f: PlanFlags, more: PlanOptions = {}): Promise<SendPlan> {
  return withStopSignals(async (signal) => {
    const p = await planSend(spec, planOptionsOf(f, { ...more, signal }));
    if (signal.aborted) { await p.close(); throw abortError(signal); }
    return p;
  });
}
