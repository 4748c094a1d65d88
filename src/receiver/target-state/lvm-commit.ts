/**
 * Atomic apply onto an LVM thin LV target `vg/LV` (names: lvm-target.ts):
 *
 *   stage   incremental: LV.thinship-staging = a thin snapshot of LV (with --force over a
 *           diverged target: of its last received snapshot, i.e. the target rolled back);
 *           full stream: a new thin LV of the volume size in the target's pool.
 *           It carries the tag thinship.staging:LV (for whoever looks) but is known by its
 *           name. The stream is written into it.
 *   seal    at the validated End: the staging LV is flushed and closed, its tags become the
 *           new record (lvm-tags.ts) plus thinship.snap:<the received snapshot to take>.
 *   commit  a journal <stateDir>/lvm-commits/<vg>/<LV>.json (written, fsynced, renamed into
 *           place) records the renames; then
 *             1. lvrename LV → LV.thinship-old          (absent for a target created by this stream)
 *             2. lvrename LV.thinship-staging → LV      ← from here the target is the new snapshot
 *             3. the received snapshot: lvcreate -s -pr LV → LV.SNAP, tagged with the record
 *             4. lvremove LV.thinship-old and the received snapshots beyond keepSnapshots
 *             5. the journal is deleted
 *           One lvs before the steps says (by uuid) which are done, so running them again is harmless.
 *
 * Recovery (the next `recv` of the target, or a receiver start): a journal
 * means the staged data was complete, so the commit is finished (the target
 * holds the new snapshot); a staging LV without a journal is an apply that
 * never reached its End: it is removed (the target was never touched and
 * holds its previous snapshot), unless it is a resumable gRPC transfer's own
 * (tag thinship.owner, lvm-stage.ts), which that transfer continues into.
 * AbortTransfer and expiry remove the transfer's staging LV; `thinship serve`
 * finishes every journal at its start (recoverLvmAtStart).
 */
import { mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { runTool } from '../../exec/run.js';
import { classifyLvm } from '../../exec/known-errors.js';
import { ourTags, parseTags, recordTags, tag } from './lvm-tags.js';
import { listLvs, oldLvName, stagingLvName, targetStateOf, type LvRow } from './lvm-target.js';
import { syncDir, type TargetRecord } from './record.js';

export interface LvmCommitJournal {
  format: 1;
  vg: string;
  lv: string;
  stagingUuid: string;
  /** The LV that was the target before ('' when this stream created it). */
  targetUuid: string;
  /** The received snapshot to take ('' for a stream that names nothing: no snapshot). */
  snapshotName: string;
  record: TargetRecord | null;
  keepSnapshots: number;
  startedUnixMs: number;
}

export type LvmRecoveryAction = 'commit-finished' | 'staging-removed';

const lvm = (tool: string, args: string[]) => runTool(tool, args, { classify: classifyLvm });

export function lvmJournalPath(stateDir: string, vg: string, lv: string): string {
  return join(stateDir, 'lvm-commits', vg, `${lv}.json`);
}

async function writeJournal(path: string, j: LvmCommitJournal): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(j));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

async function readJournal(path: string): Promise<LvmCommitJournal | undefined> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const j = JSON.parse(raw) as LvmCommitJournal;
    if (j.format !== 1 || typeof j.vg !== 'string' || typeof j.lv !== 'string' || typeof j.stagingUuid !== 'string')
      throw new Error('not a format-1 LVM commit journal');
    return j;
  } catch (e) {
    throw new ThinshipError('BAD_METADATA', `the LVM commit journal ${path} is unreadable (${(e as Error).message}); look at the LVs of the target by hand`);
  }
}

/** What a staging LV is made from: a thin snapshot of an LV of the target (incremental), or a new thin LV (full stream). */
export type StagingSource = { snapshotOf: string } | { pool: string; sizeBytes: number };

/**
 * Creates the staging LV; returns it (active, writable). A snapshot carries
 * its origin's tags: they stay until the seal replaces them with the new record.
 */
export async function createStaging(o: { vg: string; lv: string; from: StagingSource; owner?: string }): Promise<LvRow> {
  const name = stagingLvName(o.lv);
  const tags = ['--addtag', tag('staging', o.lv), ...(o.owner ? ['--addtag', tag('owner', o.owner)] : [])];
  if ('snapshotOf' in o.from) {
    // -kn -ay: active and without the activation-skip flag; -prw even when taken of a read-only received snapshot.
    await lvm('lvcreate', ['-q', '-s', '-kn', '-ay', '-prw', '-n', name, ...tags, `${o.vg}/${o.from.snapshotOf}`]);
  } else {
    await lvm('lvcreate', ['-q', '-V', `${o.from.sizeBytes}b`, '-T', `${o.vg}/${o.from.pool}`, '-n', name, ...tags]);
  }
  const row = (await listLvs(o.vg)).find((r) => r.lv === name);
  if (!row) throw new ThinshipError('TOOL_FAILED', `lvcreate made no LV ${o.vg}/${name}`);
  return row;
}

export async function extendStaging(vg: string, lv: string, sizeBytes: number): Promise<void> {
  await lvm('lvextend', ['-q', '-L', `${sizeBytes}b`, `${vg}/${stagingLvName(lv)}`]);
}

export async function removeStaging(vg: string, lv: string): Promise<void> {
  await lvm('lvremove', ['-q', '-f', `${vg}/${stagingLvName(lv)}`]);
}

/**
 * The staged data (flushed and closed by the caller) becomes the target: its
 * tags are set to the record (the staging tag goes: from here the LV is
 * known as staging by its name alone), the journal written, the renames done.
 * `rows`: the VG's LVs as they are now (one lvs less per commit).
 */
export async function commitLvmStage(o: {
  stateDir: string;
  vg: string;
  lv: string;
  staging: LvRow;
  targetUuid: string;
  record: TargetRecord | undefined;
  snapshotName: string;
  keepSnapshots: number;
  rows: LvRow[];
}): Promise<void> {
  const sname = `${o.vg}/${o.staging.lv}`;
  // The target's own (non-thinship) tags move with it: a snapshot or a new LV does not carry them.
  const userTags = (o.rows.find((r) => r.uuid === o.targetUuid)?.tags ?? []).filter((t) => !ourTags([t]).length);
  const add = [...userTags, ...(o.record ? [...recordTags(o.record), tag('snap', o.snapshotName)] : [])];
  const del = ourTags(o.staging.tags).filter((t) => !add.includes(t));
  const args = [...del.flatMap((t) => ['--deltag', t]), ...add.filter((t) => !o.staging.tags.includes(t)).flatMap((t) => ['--addtag', t])];
  if (args.length > 0) await lvm('lvchange', ['-q', ...args, sname]);
  const j: LvmCommitJournal = {
    format: 1,
    vg: o.vg,
    lv: o.lv,
    stagingUuid: o.staging.uuid,
    targetUuid: o.targetUuid,
    snapshotName: o.record ? o.snapshotName : '',
    record: o.record ?? null,
    keepSnapshots: o.keepSnapshots,
    startedUnixMs: Date.now(),
  };
  const path = lvmJournalPath(o.stateDir, o.vg, o.lv);
  await writeJournal(path, j);
  const staged = { ...o.staging, tags: [...o.staging.tags.filter((t) => !del.includes(t)), ...add] };
  await finishCommit(
    path,
    j,
    o.rows.map((r) => (r.uuid === staged.uuid ? staged : r)),
  );
}

/**
 * The commit's steps from wherever a crash left them (see the header). One
 * lvs (or the caller's `rows`) says where they are; each step then acts on
 * what it knows it changed.
 */
async function finishCommit(path: string, j: LvmCommitJournal, rowsNow?: LvRow[]): Promise<void> {
  const { vg, lv } = j;
  const staging = stagingLvName(lv);
  const old = oldLvName(lv);
  const rows = rowsNow ?? (await listLvs(vg));
  const named = (n: string) => rows.find((r) => r.lv === n);
  const stagedRow = rows.find((r) => r.uuid === j.stagingUuid);
  if (!stagedRow || (stagedRow.lv !== staging && stagedRow.lv !== lv)) {
    throw new ThinshipError(
      'BAD_METADATA',
      `commit of ${vg}/${lv}: neither ${vg}/${staging} nor ${vg}/${lv} is the staged LV ${j.stagingUuid} the journal ${path} recorded (look at the LVs by hand, then remove the journal)`,
    );
  }
  if (stagedRow.lv === staging) {
    const t = named(lv);
    if (t) {
      if (t.uuid !== j.targetUuid)
        throw new ThinshipError(
          'BAD_METADATA',
          `commit of ${vg}/${lv}: ${vg}/${lv} is now LV ${t.uuid}, not the target ${j.targetUuid || '(none)'} the journal ${path} recorded; nothing was renamed (look at it by hand)`,
        );
      if (named(old))
        throw new ThinshipError('BAD_METADATA', `commit of ${vg}/${lv}: ${vg}/${old} already exists; nothing was renamed (look at it by hand, then remove it)`);
      await lvm('lvrename', ['-q', vg, lv, old]);
      t.lv = old;
    }
    await lvm('lvrename', ['-q', vg, staging, lv]);
    stagedRow.lv = lv;
  }
  // Written before the staging tag was dropped at the seal: an older journal's LV may still carry it.
  if (stagedRow.tags.includes(tag('staging', lv))) await lvm('lvchange', ['-q', '--deltag', tag('staging', lv), `${vg}/${lv}`]);
  const remove: string[] = [];
  const existing = j.snapshotName ? named(j.snapshotName) : undefined;
  let created = false;
  if (j.snapshotName && j.record) {
    if (existing && !(existing.tags.includes(tag('src', j.record.sourceId)) && existing.tags.includes(tag('at', j.record.receivedUnixMs)))) {
      // An older received snapshot of the same source name (the chooser never picks a name another LV holds):
      // it shares no blocks with this target, so divergence would be measured against the wrong LV.
      await lvm('lvremove', ['-q', '-f', `${vg}/${j.snapshotName}`]);
      existing.lv = '';
    }
    if (!existing || existing.lv === '') {
      // Read-only, and inactive with the activation-skip flag like any thin snapshot (lvchange -ay -K to read it).
      await lvm('lvcreate', [
        '-q',
        '-s',
        '-pr',
        '-n',
        j.snapshotName,
        ...[...recordTags(j.record), tag('snapof', lv)].flatMap((x) => ['--addtag', x]),
        `${vg}/${lv}`,
      ]);
      created = true;
    }
  }
  const o = named(old);
  if (o && o.uuid === j.targetUuid) remove.push(old);
  // Received snapshots beyond keepSnapshots (newest first; the one just made is the newest).
  const s = targetStateOf(
    vg,
    lv,
    rows.filter((r) => r.lv !== ''),
  );
  const kept = s.snapshots.map((x) => x.row.lv).filter((n) => n !== j.snapshotName);
  kept.unshift(...(j.snapshotName && (created || existing) ? [j.snapshotName] : []));
  remove.push(...kept.slice(Math.max(1, j.keepSnapshots)));
  if (remove.length > 0) await lvm('lvremove', ['-q', '-f', ...remove.map((n) => `${vg}/${n}`)]);
  await unlink(path).catch(() => undefined);
  await syncDir(dirname(path));
}

/**
 * What an earlier apply left beside vg/lv: a commit journal is finished, a
 * staging LV without one removed. The target then holds one complete
 * received snapshot. `refuseOwned` (pipe-mode recv, which cannot know whether
 * a gRPC transfer is still resumable): a staging LV of a gRPC transfer is
 * refused (TRANSFER_BUSY) rather than removed.
 */
export async function recoverLvmTarget(
  stateDir: string,
  vg: string,
  lv: string,
  o: { keepOwner?: string; refuseOwned?: boolean; check?: (rows: LvRow[]) => void } = {},
): Promise<{ actions: LvmRecoveryAction[]; rows: LvRow[] }> {
  const path = lvmJournalPath(stateDir, vg, lv);
  const rows = await listLvs(vg);
  // The caller's refusals that need only the LVs (serve's pool rule) come before anything is changed.
  o.check?.(rows);
  const j = await readJournal(path);
  if (j) {
    await finishCommit(path, j, rows);
    return { actions: ['commit-finished'], rows: await listLvs(vg) };
  }
  const staging = rows.find((r) => r.lv === stagingLvName(lv));
  // A resumable gRPC transfer continues into its own staging LV (thinship.owner tag, lvm-stage.ts).
  if (staging && o.keepOwner !== undefined && parseTags(staging.tags).get('owner') === o.keepOwner) return { actions: [], rows };
  const owner = staging && parseTags(staging.tags).get('owner');
  if (owner !== undefined && o.refuseOwned) {
    throw new ThinshipError(
      'TRANSFER_BUSY',
      `target ${vg}/${lv} has the staging LV ${vg}/${stagingLvName(lv)} of a gRPC transfer (${owner}) that its sender may still resume; nothing was changed: abort that transfer (thinship transfer abort ID --to RECEIVER), or recv --force to discard what it staged`,
      { details: { target: `${vg}/${lv}`, owner } },
    );
  }
  if (staging) {
    await removeStaging(vg, lv);
    return { actions: ['staging-removed'], rows: rows.filter((r) => r.lv !== stagingLvName(lv)) };
  }
  return { actions: [], rows };
}

export function describeLvmRecovery(target: string, a: LvmRecoveryAction): string {
  return a === 'commit-finished'
    ? `${target}: an earlier commit was interrupted between its renames: finished from its journal; the target holds the new snapshot`
    : `${target}: an earlier apply was interrupted before its end: its staging LV was removed; the target holds its previous snapshot`;
}

/** One thing recovery did to an LVM target (for the log). */
export interface LvmRecovered {
  target: string;
  action: LvmRecoveryAction;
}

/**
 * Receiver start: every commit journal in the state directory is finished
 * (its staged data was complete), and in each of `vgs` the staging LVs of
 * gRPC transfers (tag thinship.owner) that are not in `keepOwners` (still
 * resumable) are removed. Pipe-mode staging LVs (no owner) are left to the
 * next apply of their target: a pipe `recv` may be running.
 */
export async function recoverLvmAtStart(
  stateDir: string,
  vgs: Iterable<string>,
  keepOwners: ReadonlySet<string>,
  failed: (what: string, e: unknown) => void,
): Promise<LvmRecovered[]> {
  const done: LvmRecovered[] = [];
  const root = join(stateDir, 'lvm-commits');
  // One journal or VG that cannot be recovered (a VG gone, no LVM tools) does not stop the others.
  for (const vg of await readdir(root).catch(() => [] as string[])) {
    for (const f of await readdir(join(root, vg)).catch(() => [] as string[])) {
      if (!f.endsWith('.json')) continue;
      const path = join(root, vg, f);
      try {
        const j = await readJournal(path);
        if (!j) continue;
        await finishCommit(path, j);
        done.push({ target: `${j.vg}/${j.lv}`, action: 'commit-finished' });
      } catch (e) {
        failed(path, e);
      }
    }
  }
  for (const vg of new Set(vgs)) {
    try {
      for (const r of await listLvs(vg)) {
        const t = parseTags(r.tags);
        const of = t.get('staging');
        const owner = t.get('owner');
        if (of === undefined || owner === undefined || r.lv !== stagingLvName(of) || keepOwners.has(owner)) continue;
        await removeStaging(vg, of);
        done.push({ target: `${vg}/${of}`, action: 'staging-removed' });
      }
    } catch (e) {
      failed(`VG ${vg}`, e);
    }
  }
  return done;
}

/** AbortTransfer and expiry: the staging LV of vg/lv is removed if transfer `owner` made it. */
export async function removeOwnedStaging(vg: string, lv: string, owner: string): Promise<boolean> {
  const staging = (await listLvs(vg)).find((r) => r.lv === stagingLvName(lv));
  if (!staging || parseTags(staging.tags).get('owner') !== owner) return false;
  await removeStaging(vg, lv);
  return true;
}
