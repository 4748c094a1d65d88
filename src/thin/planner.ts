/**
 * From "what the user named" to a Plan: resolves the source (LVM volumes or an
 * offline pool's metadata file), runs thin_dump or thin_delta (under the
 * metadata snapshot for a live pool), and spools the parsed plan so the
 * reservation is released before any data moves.
 */
import type { Readable } from 'node:stream';
import { ThinshipError } from '../errors.js';
import { spawnTool, spawnToolToFile, type StreamingTool } from '../exec/run.js';
import { classifyThinTool } from '../exec/known-errors.js';
import { buildDeltaPlan, buildFullPlan, type Plan } from './plan.js';
import type { MappingSpool } from './spool.js';
import { resolveSource, type ThinVolume } from './lvm.js';
import type { Logger, Warn } from '../log.js';
import { withMetadataSnapshot } from './metadata-snap.js';
import { SECTOR_BYTES, type Superblock, type ThinDevice } from './model.js';
import { parseThinDump } from './xml/dump.js';
import { nativeDevices, planNative, type MetadataReaderChoice } from './metadata/native-plan.js';

/** What a stream says it carries; also what a receiver records after a commit. */
export interface VolumeIdentity {
  /** e.g. "lvm:vg0/snap2" or "offline:/path/meta.bin#3" */
  name: string;
  /** LV uuid for LVM volumes; "<pool metadata path>#<dev id>" for offline ones. */
  uuid: string;
  thinId: number;
}

export type SourceSpec =
  | { kind: 'lvm'; snap: string; base?: string; allowLive?: boolean }
  | { kind: 'offline'; metadataPath: string; dataPath: string; snapDevId: number; baseDevId?: number; volumeSizeBytes?: number };

export interface SendPlan {
  mode: 'full' | 'incremental';
  source: VolumeIdentity;
  base: VolumeIdentity | undefined;
  spec: SourceSpec;
  /** Resolved LVM volumes (undefined for offline pools). */
  lvm?: { snap: ThinVolume; base?: ThinVolume };
  superblock: Superblock;
  plan: Plan;
  /** Offline sends (withMappings) keep the snapshot's mappings to find each block in the data file. */
  mappings?: MappingSpool;
  close(): Promise<void>;
}

export interface PlanOptions {
  maxOpBytes?: number;
  spoolDir?: string;
  /** Aborting it stops the thin tools and planning; a held metadata snapshot is released first. */
  signal?: AbortSignal;
  lockDir?: string;
  log?: Logger;
  /** Lines for the person running the command (a stale reservation released). Default: the log at warn. */
  warn?: Warn;
  /** Keep the source's origin→data mappings (offline reader needs them). */
  withMappings?: boolean;
  /** Who reads the pool metadata (default auto: native when it knows the format, else thin_dump/thin_delta). */
  metadataReader?: MetadataReaderChoice;
}

/**
 * Runs a thin tool and parses its stdout. When the tool fails (killed, exit 1)
 * its error wins over the parser's "unexpected end of input", because it says
 * what really happened.
 */
async function parseToolOutput<T>(tool: StreamingTool, parse: (out: Readable) => Promise<T>): Promise<T> {
  const parsed = parse(tool.stdout);
  // A dead tool may leave its pipe open in a grandchild: stop reading so the parser ends too.
  tool.done.catch(() => tool.stdout.destroy());
  const [p, d] = await Promise.allSettled([parsed, tool.done]);
  if (d.status === 'rejected') {
    if (p.status === 'fulfilled') await (p.value as { plan?: Plan }).plan?.close().catch(() => undefined);
    throw d.reason;
  }
  if (p.status === 'rejected') {
    tool.kill();
    throw p.reason;
  }
  return p.value;
}

export async function planFromMetadata(
  args: {
    metadataPath: string;
    useMetadataSnap: boolean;
    snapDevId: number;
    baseDevId?: number;
    volumeSizeBytes?: number;
    volumeSizeFlag?: string;
    signal?: AbortSignal;
  },
  opts: PlanOptions,
) {
  const native = await planNative(args, {
    choice: opts.metadataReader ?? 'auto',
    maxOpBytes: opts.maxOpBytes,
    spoolDir: opts.spoolDir,
    withMappings: opts.withMappings,
    signal: args.signal,
  });
  if (native) return native;
  const m = args.useMetadataSnap ? ['-m'] : [];
  const run = (tool: string, a: string[]) => spawnTool(tool, a, { signal: args.signal, classify: classifyThinTool });
  if (args.baseDevId === undefined) {
    // thin_dump writes a line at a time: through a file, not a pipe (see spawnToolToFile)
    const t = spawnToolToFile('thin_dump', [...m, '--dev-id', String(args.snapDevId), args.metadataPath], {
      signal: args.signal,
      classify: classifyThinTool,
      spoolDir: opts.spoolDir,
    });
    const r = await parseToolOutput(t, (out) =>
      buildFullPlan(out, {
        devId: args.snapDevId,
        volumeSizeBytes: args.volumeSizeBytes,
        volumeSizeFlag: args.volumeSizeFlag,
        maxOpBytes: opts.maxOpBytes,
        spoolDir: opts.spoolDir,
        mappingSpool: opts.withMappings,
      }),
    );
    return { plan: r.plan, superblock: r.superblock, mappings: r.mappings };
  }
  // An offline incremental's reader also needs the snapshot's own mappings (thin_delta
  // does not say where a block lives in the data file): thin_dump runs alongside.
  const mappings = opts.withMappings ? snapshotMappings(args, opts) : undefined;
  mappings?.catch(() => undefined);
  const closeMappings = async () => {
    await (await mappings?.catch(() => undefined))?.close();
  };
  try {
    const t = run('thin_delta', [...m, '--snap1', String(args.baseDevId), '--snap2', String(args.snapDevId), args.metadataPath]);
    const r = await parseToolOutput(t, (out) =>
      buildDeltaPlan(out, { volumeSizeBytes: args.volumeSizeBytes, volumeSizeFlag: args.volumeSizeFlag, maxOpBytes: opts.maxOpBytes, spoolDir: opts.spoolDir }),
    );
    if (r.leftDevId !== args.baseDevId || r.rightDevId !== args.snapDevId) {
      await r.plan.close();
      throw new ThinshipError('BAD_METADATA', `thin_delta compared devices ${r.leftDevId} and ${r.rightDevId}, not ${args.baseDevId} and ${args.snapDevId}`);
    }
    try {
      return { plan: r.plan, superblock: r.superblock, mappings: await mappings };
    } catch (e) {
      await r.plan.close();
      throw e;
    }
  } catch (e) {
    await closeMappings();
    throw e;
  }
}

/** The snapshot's origin→data mappings alone (thin_dump), for reading an offline pool. */
export async function snapshotMappings(
  args: { metadataPath: string; useMetadataSnap: boolean; snapDevId: number; signal?: AbortSignal },
  opts: PlanOptions,
): Promise<MappingSpool> {
  const m = args.useMetadataSnap ? ['-m'] : [];
  const t = spawnToolToFile('thin_dump', [...m, '--dev-id', String(args.snapDevId), args.metadataPath], {
    signal: args.signal,
    classify: classifyThinTool,
    spoolDir: opts.spoolDir,
  });
  const r = await parseToolOutput(t, (out) => buildFullPlan(out, { devId: args.snapDevId, spoolDir: opts.spoolDir, mappingSpool: true }));
  await r.plan.close();
  return r.mappings!;
}

function checkBlockSize(sb: Superblock, expectedBytes: number | undefined, where: string): void {
  const bytes = sb.dataBlockSizeSectors * SECTOR_BYTES;
  if (expectedBytes !== undefined && bytes !== expectedBytes) {
    throw new ThinshipError('BAD_METADATA', `${where}: metadata says the block size is ${bytes} bytes but lvs says the pool's chunk size is ${expectedBytes}`);
  }
}

/**
 * The details of every thin device in an offline pool's metadata: read by the
 * native reader when it plans (no thin_dump process just for the order check),
 * else thin_dump --skip-mappings (no mappings read).
 */
async function offlineDevices(metadataPath: string, opts: PlanOptions): Promise<ThinDevice[]> {
  const native = await nativeDevices(metadataPath, opts.metadataReader ?? 'auto');
  if (native !== undefined) return native;
  const t = spawnTool('thin_dump', ['--skip-mappings', metadataPath], { signal: opts.signal, classify: classifyThinTool });
  return (await parseToolOutput(t, (out) => parseThinDump(out, { onMappings: () => undefined }, { skipMappings: true }))).devices;
}

/**
 * An offline incremental needs BASE older than SNAP, as LVM mode checks with
 * lvs's transaction ids. The metadata says when each device was made: its
 * creation_time (the pool's snapshot counter, which every snapshot advances),
 * then its transaction. thin_delta itself would diff in either order.
 */
export function checkOfflineOrder(devices: ThinDevice[], baseDevId: number, snapDevId: number, where: string): void {
  if (baseDevId === snapDevId) throw new ThinshipError('INVALID_SOURCE', `base and snapshot are the same thin device (${snapDevId} in ${where})`);
  const find = (id: number, what: string) => {
    const d = devices.find((x) => x.devId === id);
    if (d === undefined)
      throw new ThinshipError(
        'NOT_FOUND',
        `${what}: thin device id ${id} is not in the pool metadata ${where} (devices found: ${devices.map((x) => x.devId).join(', ') || 'none'})`,
        { details: { devId: id } },
      );
    return d;
  };
  const base = find(baseDevId, 'BASE');
  const snap = find(snapDevId, 'SNAP');
  const older = base.creationTime < snap.creationTime || (base.creationTime === snap.creationTime && base.transaction < snap.transaction);
  if (!older) {
    const of = (d: ThinDevice) => `creation_time ${d.creationTime}, transaction ${d.transaction}`;
    throw new ThinshipError(
      'INVALID_SOURCE',
      `base device ${baseDevId} (${of(base)}) is not older than snapshot device ${snapDevId} (${of(snap)}) in ${where}: give the older snapshot first`,
      { details: { baseDevId, snapDevId } },
    );
  }
}

export async function planSend(spec: SourceSpec, opts: PlanOptions = {}): Promise<SendPlan> {
  if (spec.kind === 'offline') {
    if (spec.baseDevId !== undefined) checkOfflineOrder(await offlineDevices(spec.metadataPath, opts), spec.baseDevId, spec.snapDevId, spec.metadataPath);
    const r = await planFromMetadata(
      {
        metadataPath: spec.metadataPath,
        useMetadataSnap: false,
        snapDevId: spec.snapDevId,
        baseDevId: spec.baseDevId,
        volumeSizeBytes: spec.volumeSizeBytes,
        volumeSizeFlag: spec.volumeSizeBytes === undefined ? undefined : '--volume-size',
        signal: opts.signal,
      },
      opts,
    );
    const id = (devId: number): VolumeIdentity => ({ name: `offline:${spec.metadataPath}#${devId}`, uuid: `${spec.metadataPath}#${devId}`, thinId: devId });
    return {
      mode: spec.baseDevId === undefined ? 'full' : 'incremental',
      source: id(spec.snapDevId),
      base: spec.baseDevId === undefined ? undefined : id(spec.baseDevId),
      spec,
      superblock: r.superblock,
      plan: r.plan,
      mappings: r.mappings,
      close: async () => {
        await r.plan.close();
        await r.mappings?.close();
      },
    };
  }
  const { snap, base } = await resolveSource(spec.snap, spec.base, { allowLive: spec.allowLive, signal: opts.signal });
  if (!snap.pool.active) {
    throw new ThinshipError(
      'POOL_INACTIVE',
      `pool ${snap.vg}/${snap.pool.lv} is not active: activate it (lvchange -ay ${snap.vg}/${snap.pool.lv}), or read it offline with --pool-metadata/--pool-data`,
    );
  }
  const r = await withMetadataSnapshot(
    snap.vg,
    snap.pool.lv,
    (scope) =>
      planFromMetadata(
        {
          metadataPath: scope.tmetaPath,
          useMetadataSnap: true,
          snapDevId: snap.thinId,
          baseDevId: base?.thinId,
          volumeSizeBytes: snap.sizeBytes,
          signal: scope.signal,
        },
        opts,
      ),
    { lockDir: opts.lockDir, signal: opts.signal, log: opts.log, warn: opts.warn },
  );
  try {
    checkBlockSize(r.superblock, snap.pool.chunkSizeBytes, `pool ${snap.vg}/${snap.pool.lv}`);
  } catch (e) {
    await r.plan.close();
    throw e;
  }
  const id = (v: ThinVolume): VolumeIdentity => ({ name: `lvm:${v.vg}/${v.lv}`, uuid: v.uuid, thinId: v.thinId });
  return {
    mode: base ? 'incremental' : 'full',
    source: id(snap),
    base: base ? id(base) : undefined,
    spec,
    lvm: { snap, base },
    superblock: r.superblock,
    plan: r.plan,
    mappings: r.mappings,
    close: async () => {
      await r.plan.close();
      await r.mappings?.close();
    },
  };
}
