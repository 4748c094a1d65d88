/**
 * Plans from the native metadata reader: the same typed model the thin tools'
 * XML gives (superblock, device, mappings; delta ranges), fed to the same plan
 * builders (thin/plan.ts), so both readers make the same plan op for op.
 */
import { ThinshipError } from '../../errors.js';
import { log } from '../../log.js';
import { buildDeltaPlanFrom, buildFullPlanFrom, type DeltaPlanOptions, type FullPlanOptions, type Plan } from '../plan.js';
import type { MappingSpool } from '../spool.js';
import type { Superblock, ThinDevice } from '../model.js';
import { lastKey } from './btree.js';
import { walkDelta, walkDeltaNative } from './delta.js';
import { MAPPING_VALUE_BYTES, MetadataReader } from './reader.js';

export type MetadataReaderChoice = 'auto' | 'native' | 'thin-tools';
const METADATA_READER_CHOICES: readonly MetadataReaderChoice[] = ['auto', 'native', 'thin-tools'];

/** The --metadata-reader flag, else `env` (the CLI passes THINSHIP_METADATA_READER, to pin a reader for every run), else auto. */
export function checkMetadataReaderChoice(flag: string | undefined, env: string | undefined): MetadataReaderChoice {
  const s = flag ?? (env === '' ? undefined : env);
  if (s === undefined) return 'auto';
  if (!(METADATA_READER_CHOICES as readonly string[]).includes(s)) {
    throw new ThinshipError(
      'USAGE',
      `${flag !== undefined ? '--metadata-reader' : 'THINSHIP_METADATA_READER'} must be one of ${METADATA_READER_CHOICES.join(', ')}, got "${s}"`,
    );
  }
  return s as MetadataReaderChoice;
}

/** A full plan of `devId` (and its mappings when asked) read natively. */
export async function nativeFullPlan(r: MetadataReader, devId: number, opts: FullPlanOptions & { signal?: AbortSignal }) {
  const sb = r.superblock();
  return buildFullPlanFrom(
    async (sink) => {
      sink.onSuperblock?.(sb);
      let found;
      try {
        found = await r.deviceRoot(devId);
      } catch (e) {
        // The same NOT_FOUND the thin_dump path gives (it lists the devices there are).
        if (e instanceof ThinshipError && e.code === 'NOT_FOUND') return { superblock: sb, devices: await r.devices() };
        throw e;
      }
      sink.onDevice?.(found.device);
      if (sink.needsDataBlocks)
        await r.walkMappings(found.root, devId, (batch) => {
          opts.signal?.throwIfAborted();
          return sink.onMappings(devId, batch);
        });
      else await r.walkMappedRuns(found.root, devId, (pairs, count) => sink.onMappedRuns(devId, pairs, count), opts.signal);
      return { superblock: sb, devices: [found.device] };
    },
    { ...opts, devId },
  );
}

/** An incremental plan base..snap by the parallel walk. */
export async function nativeDeltaPlan(r: MetadataReader, baseDevId: number, snapDevId: number, opts: DeltaPlanOptions & { signal?: AbortSignal }) {
  const sb = r.superblock();
  const left = await r.deviceRoot(baseDevId);
  const right = await r.deviceRoot(snapDevId);
  const before = r.blocks.blocksRead;
  const res = await buildDeltaPlanFrom(async (sink) => {
    sink.onSuperblock?.(sb);
    const l = { root: left.root, devId: baseDevId },
      s = { root: right.root, devId: snapDevId };
    // The walk in the addon; walkDelta, its JavaScript twin, where the addon is not built.
    const stats =
      (await walkDeltaNative(r.blocks, l, s, (runs, count) => sink.onPlanRuns(runs, count), opts.signal)) ??
      (await walkDelta(r.blocks, l, s, (b) => {
        opts.signal?.throwIfAborted();
        return sink.onRanges(b);
      }));
    // thin_delta's ranges run to the last block mapped in either device; shared subtrees were skipped, so ask the trees.
    const rightLast = lastKey(r.blocks, right.root, MAPPING_VALUE_BYTES, `mapping tree of device ${snapDevId}`);
    const leftLast = left.root === right.root ? rightLast : lastKey(r.blocks, left.root, MAPPING_VALUE_BYTES, `mapping tree of device ${baseDevId}`);
    log.debug({ baseDevId, snapDevId, blocksRead: r.blocks.blocksRead - before, sharedSubtreesSkipped: stats.sharedSubtreesSkipped }, 'native delta walked');
    return { superblock: sb, leftDevId: baseDevId, rightDevId: snapDevId, extentBlocks: Math.max(leftLast, rightLast) + 1, snapEndBlocks: rightLast + 1 };
  }, opts);
  return res;
}

export interface NativePlanArgs {
  metadataPath: string;
  useMetadataSnap: boolean;
  snapDevId: number;
  baseDevId?: number;
  volumeSizeBytes?: number;
  /** The flag the size came from: a size that cuts the snapshot's mappings is refused naming it. */
  volumeSizeFlag?: string;
}

export interface NativePlanResult {
  plan: Plan;
  superblock: Superblock;
  mappings?: MappingSpool;
}

/**
 * Plans with the native reader, or returns undefined when `auto` finds a
 * format it does not know (the caller then runs the thin tools). With
 * `native`, an unknown format is BAD_METADATA.
 */
export async function planNative(
  args: NativePlanArgs,
  opts: { choice: MetadataReaderChoice; maxOpBytes?: number; spoolDir?: string; withMappings?: boolean; signal?: AbortSignal },
): Promise<NativePlanResult | undefined> {
  const r = await openIfKnown(args.metadataPath, args.useMetadataSnap, opts.choice);
  if (r === undefined) return undefined;
  try {
    const common = {
      volumeSizeBytes: args.volumeSizeBytes,
      volumeSizeFlag: args.volumeSizeFlag,
      maxOpBytes: opts.maxOpBytes,
      spoolDir: opts.spoolDir,
      signal: opts.signal,
    };
    if (args.baseDevId === undefined) {
      const f = await nativeFullPlan(r, args.snapDevId, { devId: args.snapDevId, ...common, mappingSpool: opts.withMappings });
      return { plan: f.plan, superblock: f.superblock, mappings: f.mappings };
    }
    // An offline incremental's reader also needs the snapshot's own mappings.
    const m = opts.withMappings
      ? await nativeFullPlan(r, args.snapDevId, { devId: args.snapDevId, spoolDir: opts.spoolDir, mappingSpool: true, signal: opts.signal })
      : undefined;
    await m?.plan.close();
    try {
      const d = await nativeDeltaPlan(r, args.baseDevId, args.snapDevId, common);
      return { plan: d.plan, superblock: d.superblock, mappings: m?.mappings };
    } catch (e) {
      await m?.mappings?.close();
      throw e;
    }
  } finally {
    await r.close();
  }
}

/**
 * Every thin device's details, read natively (what `thin_dump --skip-mappings`
 * gives: the superblock and the device details tree, every block checked), or
 * undefined when the thin tools are to be used (as planNative decides).
 */
export async function nativeDevices(metadataPath: string, choice: MetadataReaderChoice): Promise<ThinDevice[] | undefined> {
  const r = await openIfKnown(metadataPath, false, choice);
  if (r === undefined) return undefined;
  try {
    return await r.devices();
  } finally {
    await r.close();
  }
}

/**
 * The native reader on `metadataPath`, or undefined when `choice` is
 * thin-tools, or auto and the format is one it does not know (logged). With
 * `native`, an unknown format is BAD_METADATA.
 */
async function openIfKnown(metadataPath: string, useMetadataSnap: boolean, choice: MetadataReaderChoice): Promise<MetadataReader | undefined> {
  if (choice === 'thin-tools') return undefined;
  const r = await MetadataReader.open(metadataPath, { useMetadataSnap, dropCache: useMetadataSnap });
  try {
    const why = r.unknownFormat();
    if (why !== undefined) {
      if (choice === 'native')
        throw new ThinshipError(
          'BAD_METADATA',
          `the native metadata reader does not know this metadata (${why}) in ${metadataPath}: use --metadata-reader thin-tools`,
        );
      log.info({ metadataReader: 'thin-tools', reason: why }, 'metadata reader: thin tools (the native reader does not know this format)');
      await r.close();
      return undefined;
    }
    log.info(
      { metadataReader: 'native', reason: choice === 'native' ? 'asked for' : `known format (version ${r.sb.version}, flags ${r.sb.flags})` },
      'metadata reader: native',
    );
    return r;
  } catch (e) {
    await r.close();
    throw e;
  }
}
