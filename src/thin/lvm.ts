/**
 * Resolving LVM thin volumes with `lvs --reportformat json --units b --nosuffix`.
 * Every lvs value is a string in that report; this file turns them into a typed
 * ThinVolume and checks what a sender needs (thin, same pool, base older,
 * not a live writable volume).
 */
import { ThinshipError } from '../errors.js';
import { runTool, type RunOptions } from '../exec/run.js';
import { classifyLvm } from '../exec/known-errors.js';
import { parseLvName, lvDevicePath, type LvName } from './names.js';

const LVS_FIELDS = [
  'vg_name',
  'lv_name',
  'lv_uuid',
  'lv_size',
  'pool_lv',
  'origin',
  'lv_dm_path',
  'thin_id',
  'transaction_id',
  'chunk_size',
  'lv_active',
  'lv_attr',
] as const;
type LvsRow = Record<(typeof LVS_FIELDS)[number], string>;

export interface ThinPool {
  vg: string;
  lv: string;
  /** Pool block (chunk) size. */
  chunkSizeBytes: number;
  transactionId: number;
  active: boolean;
}

export interface ThinVolume {
  /** As the user wrote it, for messages. */
  name: string;
  vg: string;
  lv: string;
  uuid: string;
  sizeBytes: number;
  pool: ThinPool;
  thinId: number;
  /** Pool transaction id when the volume was created: orders snapshots of one pool. */
  transactionId: number;
  attr: string;
  active: boolean;
  /** Origin LV name for snapshots, '' otherwise. */
  origin: string;
  /** /dev/mapper path (exists only while active). */
  devicePath: string;
}

function intField(row: LvsRow, field: keyof LvsRow, what: string): number {
  const v = row[field];
  if (!/^\d+$/.test(v ?? ''))
    throw new ThinshipError('TOOL_FAILED', `lvs gave a non-numeric ${field} "${v}" for ${what} (expected bytes from --units b --nosuffix)`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new ThinshipError('TOOL_FAILED', `lvs gave ${field} ${v} for ${what}: too large`);
  return n;
}

/** Parses lvs JSON output (also used by tests on recorded outputs). */
function parseLvsReport(stdout: string): LvsRow[] {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch (e) {
    throw new ThinshipError('TOOL_FAILED', `lvs printed something that is not JSON: ${(e as Error).message}`);
  }
  const report = (doc as { report?: { lv?: unknown }[] }).report;
  if (!Array.isArray(report)) throw new ThinshipError('TOOL_FAILED', 'lvs JSON has no "report" array');
  const rows: LvsRow[] = [];
  for (const r of report) {
    if (!Array.isArray(r.lv)) continue;
    for (const lv of r.lv as Record<string, unknown>[]) rows.push(lv as LvsRow);
  }
  return rows;
}

const isActive = (attr: string) => attr[4] === 'a';

/** Lists a VG's LVs. */
async function lvsOfVg(vg: string, opts: RunOptions): Promise<LvsRow[]> {
  const r = await runTool('lvs', ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', LVS_FIELDS.join(','), vg], { ...opts, classify: classifyLvm });
  return parseLvsReport(r.stdout);
}

function toVolume(name: string, row: LvsRow, rows: LvsRow[]): ThinVolume {
  const what = `${row.vg_name}/${row.lv_name}`;
  if (!row.lv_attr || row.lv_attr[0] !== 'V' || !row.pool_lv) {
    throw new ThinshipError('NOT_THIN', `${name} is not a thin volume (lv_attr "${row.lv_attr}"; a thin LV has attr starting with V and a pool)`);
  }
  const poolRow = rows.find((r) => r.lv_name === row.pool_lv);
  if (!poolRow) throw new ThinshipError('TOOL_FAILED', `lvs lists ${what} in pool ${row.pool_lv}, but not the pool itself`);
  const chunk = intField(poolRow, 'chunk_size', `pool ${row.vg_name}/${row.pool_lv}`);
  if (chunk <= 0 || chunk % 512 !== 0)
    throw new ThinshipError('TOOL_FAILED', `pool ${row.vg_name}/${row.pool_lv} has chunk size ${chunk}, not a positive multiple of 512`);
  return {
    name,
    vg: row.vg_name,
    lv: row.lv_name,
    uuid: row.lv_uuid,
    sizeBytes: intField(row, 'lv_size', what),
    pool: {
      vg: row.vg_name,
      lv: row.pool_lv,
      chunkSizeBytes: chunk,
      transactionId: intField(poolRow, 'transaction_id', `pool ${row.vg_name}/${row.pool_lv}`),
      active: isActive(poolRow.lv_attr),
    },
    thinId: intField(row, 'thin_id', what),
    transactionId: intField(row, 'transaction_id', what),
    attr: row.lv_attr,
    active: isActive(row.lv_attr),
    origin: row.origin ?? '',
    devicePath: lvDevicePath(row.vg_name, row.lv_name),
  };
}

/** Resolves one thin LV by name (`vg/lv` or `/dev/vg/lv`). */
export async function resolveThinVolume(name: string, opts: RunOptions = {}): Promise<ThinVolume> {
  const n: LvName = parseLvName(name);
  const rows = await lvsOfVg(n.vg, opts);
  const row = rows.find((r) => r.lv_name === n.lv);
  if (!row) throw new ThinshipError('NOT_FOUND', `no such logical volume: ${n.vg}/${n.lv}`);
  return toVolume(name, row, rows);
}

/**
 * A volume whose content cannot change while it is read: read-only (attr[1]
 * 'r'), or a snapshot with the activation-skip flag (attr[9] 'k') that is not
 * open. Anything else is "live" and refused as a source unless allowed.
 */
function isLiveWritable(v: ThinVolume): boolean {
  const readOnly = v.attr[1] === 'r';
  const skipFlag = v.attr[9] === 'k';
  const open = v.attr[5] === 'o';
  return !(readOnly || (skipFlag && !open));
}

export interface SourcePair {
  snap: ThinVolume;
  base?: ThinVolume;
}

/** Resolves SNAP (and BASE) and checks them as a send source. */
export async function resolveSource(snapName: string, baseName: string | undefined, o: { allowLive?: boolean } & RunOptions = {}): Promise<SourcePair> {
  const snap = await resolveThinVolume(snapName, o);
  const base = baseName === undefined ? undefined : await resolveThinVolume(baseName, o);
  for (const v of [snap, base]) {
    if (v && !o.allowLive && isLiveWritable(v)) {
      throw new ThinshipError(
        'LIVE_SOURCE',
        `${v.name} is a live writable volume (attr ${v.attr}): its content may change while it is read. Send a snapshot of it (lvcreate -s ${v.vg}/${v.lv}) or pass --allow-live`,
      );
    }
  }
  if (base) {
    if (base.vg !== snap.vg || base.pool.lv !== snap.pool.lv) {
      throw new ThinshipError(
        'INVALID_SOURCE',
        `base ${base.name} (pool ${base.vg}/${base.pool.lv}) and snapshot ${snap.name} (pool ${snap.vg}/${snap.pool.lv}) are in different pools: an incremental needs both in one pool`,
      );
    }
    if (base.thinId === snap.thinId)
      throw new ThinshipError('INVALID_SOURCE', `base and snapshot are the same thin volume (${snap.name}, thin id ${snap.thinId})`);
    if (base.transactionId >= snap.transactionId) {
      throw new ThinshipError(
        'INVALID_SOURCE',
        `base ${base.name} (transaction ${base.transactionId}) is not older than snapshot ${snap.name} (transaction ${snap.transactionId}): give the older snapshot first`,
      );
    }
  }
  return { snap, base };
}

/** Activates an inactive thin LV for reading (-K: snapshots carry the activation-skip flag); returns how to put it back. */
export async function activateForReading(v: ThinVolume, opts: RunOptions = {}): Promise<() => Promise<void>> {
  if (v.active) return async () => undefined;
  await runTool('lvchange', ['-ay', '-K', `${v.vg}/${v.lv}`], { ...opts, classify: classifyLvm });
  return async () => {
    await runTool('lvchange', ['-an', `${v.vg}/${v.lv}`], { classify: classifyLvm });
  };
}
