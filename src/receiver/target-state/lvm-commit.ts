/**
 * Atomic apply onto an LVM thin LV target `vg/LV` (names: lvm-target.ts):
 *
 *   stage   incremental: LV.thinship-staging = a thin snapshot of LV (with --force over a
 *           diverged target: of its last received snapshot, i.e. the target rolled back);
 *           full stream: a new thin LV of the volume size in the target's pool.
 *           It carries the tag thinship.staging:LV. The stream is written into it.
 *   seal    at the validated End: the staging LV is flushed and closed, its tags become the
 *           new record (lvm-tags.ts) plus thinship.snap:<the received snapshot to take>.
 *   commit  a journal <stateDir>/lvm-commits/<vg>/<LV>.json (written, fsynced, renamed into
 *           place) records the renames; then
 *             1. lvrename LV → LV.thinship-old          (absent for a target created by this stream)
 *             2. lvrename LV.thinship-staging → LV      ← from here the target is the new snapshot
 *             3. lvchange --deltag thinship.staging:LV
 *             4. the received snapshot: lvcreate -s -pr LV → LV.SNAP, tagged with the record
 *             5. lvremove LV.thinship-old; received snapshots beyond keepSnapshots removed
 *             6. the journal is deleted
 *           Every step checks the LVs' names and uuids first, so running them again is harmless.
 *
 * Recovery (the next `recv` of the target, or a receiver start): a journal
 * means the staged data was complete, so the commit is finished (the target
 * holds the new snapshot); a staging LV without a journal is an apply that
 * never reached its End: it is removed (the target was never touched and
 * holds its previous snapshot). Abort and expiry remove the staging LV.
 */
import { mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { runTool } from '../../exec/run.js';
import { classifyLvm } from '../../exec/known-errors.js';
import { ourTags, recordTags, tag } from './lvm-tags.js';
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
  try { await fh.writeFile(JSON.stringify(j)); await fh.sync(); } finally { await fh.close(); }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

async function readJournal(path: string): Promise<LvmCommitJournal | undefined> {
  let raw: string;
  try { raw = await readFile(path, 'utf8'); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; throw e; }
  try {
    const j = JSON.parse(raw) as LvmCommitJournal;
    if (j.format !== 1 || typeof j.vg !== 'string' || typeof j.lv !== 'string' || typeof j.stagingUuid !== 'string') throw new Error('not a format-1 LVM commit journal');
    return j;
  } catch (e) {
    throw new ThinshipError('BAD_METADATA', `the LVM commit journal ${path} is unreadable (${(e as Error).message}); look at the LVs of the target by hand`);
  }
}

/** Creates the staging LV; returns it (active, writable). */
export async function createStaging(o: { vg: string; lv: string; from: { snapshotOf: string } | { pool: string; sizeBytes: number } }): Promise<LvRow> {
  const name = stagingLvName(o.lv);
  const tags = ['--addtag', tag('staging', o.lv)];
  if ('snapshotOf' in o.from) {
    // -kn -ay: active and without the activation-skip flag; -prw even when taken of a read-only received snapshot.
    await lvm('lvcreate', ['-q', '-s', '-kn', '-ay', '-prw', '-n', name, ...tags, `${o.vg}/${o.from.snapshotOf}`]);
    const rows = await listLvs(o.vg);
    // A snapshot carries its origin's tags: the staging LV must carry only its own.
    const inherited = ourTags(rows.find((r) => r.lv === name)?.tags ?? []).filter((t) => t !== tag('staging', o.lv));
    if (inherited.length > 0) await lvm('lvchange', ['-q', ...inherited.flatMap((t) => ['--deltag', t]), `${o.vg}/${name}`]);
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
 * tags are set to the record, the journal written, the renames done.
 */
export async function commitLvmStage(o: { stateDir: string; vg: string; lv: string; staging: LvRow; targetUuid: string; record: TargetRecord | undefined; snapshotName: string; keepSnapshots: number }): Promise<void> {
  const sname = `${o.vg}/${o.staging.lv}`;
  const add = o.record ? [...recordTags(o.record), tag('snap', o.snapshotName)] : [];
  const del = ourTags(o.staging.tags).filter((t) => t !== tag('staging', o.lv) && !add.includes(t));
  const args = [...del.flatMap((t) => ['--deltag', t]), ...add.filter((t) => !o.staging.tags.includes(t)).flatMap((t) => ['--addtag', t])];
  if (args.length > 0) await lvm('lvchange', ['-q', ...args, sname]);
  const j: LvmCommitJournal = {
    format: 1, vg: o.vg, lv: o.lv, stagingUuid: o.staging.uuid, targetUuid: o.targetUuid, snapshotName: o.record ? o.snapshotName : '',
    record: o.record ?? null, keepSnapshots: o.keepSnapshots, startedUnixMs: Date.now(),
  };
  const path = lvmJournalPath(o.stateDir, o.vg, o.lv);
  await writeJournal(path, j);
  await finishCommit(path, j);
}

/** The commit's steps from wherever a crash left them (see the header); each checks before it acts. */
async function finishCommit(path: string, j: LvmCommitJournal): Promise<void> {
  const { vg, lv } = j;
  const staging = stagingLvName(lv);
  const old = oldLvName(lv);
  let rows = await listLvs(vg);
  const named = (n: string) => rows.find((r) => r.lv === n);
  if (named(staging)?.uuid === j.stagingUuid) {
    const t = named(lv);
    if (t) {
      if (t.uuid !== j.targetUuid) throw new ThinshipError('BAD_METADATA', `commit of ${vg}/${lv}: ${vg}/${lv} is now LV ${t.uuid}, not the target ${j.targetUuid || '(none)'} the journal ${path} recorded; nothing was renamed (look at it by hand)`);
      if (named(old)) throw new ThinshipError('BAD_METADATA', `commit of ${vg}/${lv}: ${vg}/${old} already exists; nothing was renamed (look at it by hand, then remove it)`);
      await lvm('lvrename', ['-q', vg, lv, old]);
    }
    await lvm('lvrename', ['-q', vg, staging, lv]);
    rows = await listLvs(vg);
  }
  const t = named(lv);
  if (t?.uuid !== j.stagingUuid) throw new ThinshipError('BAD_METADATA', `commit of ${vg}/${lv}: neither ${vg}/${staging} nor ${vg}/${lv} is the staged LV ${j.stagingUuid} the journal ${path} recorded (look at the LVs by hand, then remove the journal)`);
  if (t.tags.includes(tag('staging', lv))) await lvm('lvchange', ['-q', '--deltag', tag('staging', lv), `${vg}/${lv}`]);
  const existing = j.snapshotName ? named(j.snapshotName) : undefined;
  if (existing && j.record && !(existing.tags.includes(tag('src', j.record.sourceId)) && existing.tags.includes(tag('at', j.record.receivedUnixMs)))) {
    // An older received snapshot of the same source name (the chooser never picks a name another LV holds):
    // it shares no blocks with this target, so divergence would be measured against the wrong LV.
    await lvm('lvremove', ['-q', '-f', `${vg}/${j.snapshotName}`]);
    rows = await listLvs(vg);
  }
  if (j.snapshotName && j.record && !named(j.snapshotName)) {
    // Read-only, and inactive with the activation-skip flag like any thin snapshot (lvchange -ay -K to read it).
    await lvm('lvcreate', ['-q', '-s', '-pr', '-n', j.snapshotName, ...[...recordTags(j.record), tag('snapof', lv)].flatMap((x) => ['--addtag', x]), `${vg}/${lv}`]);
  }
  const o = named(old);
  if (o && o.uuid === j.targetUuid) await lvm('lvremove', ['-q', '-f', `${vg}/${old}`]);
  await pruneSnapshots(vg, lv, j.keepSnapshots);
  await unlink(path).catch(() => undefined);
  await syncDir(dirname(path));
}

/** Keeps the newest `keep` received snapshots of vg/lv (and always the one the target names). */
async function pruneSnapshots(vg: string, lv: string, keep: number): Promise<string[]> {
  const s = targetStateOf(vg, lv, await listLvs(vg));
  const removed: string[] = [];
  for (const [i, snap] of s.snapshots.entries()) {
    if (i < keep || snap.row.lv === s.lastSnapshotName) continue;
    await lvm('lvremove', ['-q', '-f', `${vg}/${snap.row.lv}`]);
    removed.push(snap.row.lv);
  }
  return removed;
}

/**
 * What an earlier apply left beside vg/lv: a commit journal is finished, a
 * staging LV without one removed. The target then holds one complete
 * received snapshot.
 */
export async function recoverLvmTarget(stateDir: string, vg: string, lv: string): Promise<LvmRecoveryAction[]> {
  const path = lvmJournalPath(stateDir, vg, lv);
  const j = await readJournal(path);
  if (j) {
    await finishCommit(path, j);
    return ['commit-finished'];
  }
  const s = targetStateOf(vg, lv, await listLvs(vg));
  if (s.staging) {
    await removeStaging(vg, lv);
    return ['staging-removed'];
  }
  return [];
}

/** Targets with a commit journal under stateDir (receiver start). */
export async function journaledLvmTargets(stateDir: string): Promise<{ vg: string; lv: string }[]> {
  const root = join(stateDir, 'lvm-commits');
  const out: { vg: string; lv: string }[] = [];
  for (const vg of await readdir(root).catch(() => [] as string[])) {
    for (const f of await readdir(join(root, vg)).catch(() => [] as string[])) if (f.endsWith('.json')) out.push({ vg, lv: f.slice(0, -'.json'.length) });
  }
  return out;
}

export function describeLvmRecovery(target: string, a: LvmRecoveryAction): string {
  return a === 'commit-finished'
    ? `${target}: an earlier commit was interrupted between its renames: finished from its journal; the target holds the new snapshot`
    : `${target}: an earlier apply was interrupted before its end: its staging LV was removed; the target holds its previous snapshot`;
}
