/**
 * The receiver's rules on what a stream may be applied to, checked against
 * the record on the target (record.ts), never against the transfer registry
 * (which expires), and before the first byte is written:
 *
 *  - an incremental applies only onto a target whose record holds its base;
 *    a target with no record refuses an incremental that names its base,
 *    unless forced; a plain LINBIT stream (no identity) is applied as
 *    thin_recv would, with a warning that nothing could be checked;
 *  - a target written since its last commit has DIVERGED and is refused
 *    unless forced (then the apply goes over it, and says what it overwrote).
 *
 * Divergence of a file is seen by its size, mtime, ctime and inode against
 * those recorded at commit. Limits (README): a write that restores size and
 * mtime within CTIME_SLACK_NS of the commit, or content changed through
 * another hard link before the record was taken, is not seen.
 */
import type { BigIntStats } from 'node:fs';
import { ThinshipError } from '../../errors.js';
import type { StoredRecord, TargetRecord } from './record.js';

/**
 * Setting the commit attribute (and the rename of a staged file) moves ctime
 * after the commit stat is taken: a ctime within this much of it is ours.
 */
const CTIME_SLACK_NS = 5_000_000_000n;

export interface StreamIdentity {
  target: string;
  /** true: an incremental or a plain LINBIT stream (in place); false: a full stream. */
  incremental: boolean;
  /** '' or undefined: the stream does not say (plain LINBIT). */
  sourceId?: string;
  baseId?: string;
}

export interface RuleOutcome {
  /** Said to the operator (stderr / log): what was not checked, what a --force overwrote. */
  warnings: string[];
}

/** How the target differs from what was recorded at commit; [] when it has not changed. */
export function divergenceOf(rec: StoredRecord, st: BigIntStats): string[] {
  const c = rec.commit;
  const why: string[] = [];
  if (String(st.ino) !== c.ino || String(st.dev) !== c.dev) why.push(`it is another file (inode ${st.ino}, recorded ${c.ino})`);
  if (String(st.size) !== c.sizeBytes) why.push(`size ${st.size} bytes, recorded ${c.sizeBytes}`);
  if (String(st.mtimeNs) !== c.mtimeNs) why.push(`modified at ${nsIso(st.mtimeNs)}, after the commit at ${nsIso(BigInt(c.mtimeNs))}`);
  else if (st.ctimeNs - BigInt(c.ctimeNs) > CTIME_SLACK_NS || st.ctimeNs < BigInt(c.ctimeNs))
    why.push(`changed (ctime ${nsIso(st.ctimeNs)}) after the commit at ${nsIso(BigInt(c.ctimeNs))}`);
  return why;
}

function nsIso(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

/** Throws the refusal, or returns what to warn about. Files; `st` undefined, or a record without its commit stat (LVM: lvm-target.ts lvmDivergence checks before this): divergence is not checked here. */
export function checkTargetRules(
  s: StreamIdentity,
  rec: Pick<StoredRecord, 'record'> | undefined,
  st: BigIntStats | undefined,
  o: { force: boolean },
): RuleOutcome {
  return checkRecordRules(s, rec?.record, rec && 'commit' in rec && st ? divergenceOf(rec as StoredRecord, st) : [], o);
}

/**
 * The rules for any kind of target: `record` is what it holds (undefined: no
 * record), `divergence` how it changed since (its kind's own check: files
 * divergenceOf above, block devices device.ts).
 */
export function checkRecordRules(s: StreamIdentity, record: TargetRecord | undefined, divergence: string[], o: { force: boolean }): RuleOutcome {
  const warnings: string[] = [];
  const holds = record
    ? `${record.sourceId} (${record.snapshotName ? `${record.snapshotName}, ` : ''}received ${new Date(record.receivedUnixMs).toISOString()})`
    : undefined;
  if (record && divergence.length > 0) {
    const why = divergence;
    if (!o.force) {
      throw new ThinshipError(
        'DIVERGED',
        `target ${s.target} was written since it received ${holds}: ${why.join('; ')}; nothing was written (--force applies over it, as zfs recv -F does)`,
        { details: { target: s.target, holds: record.sourceId, divergence: why } },
      );
    }
    warnings.push(`--force: target ${s.target} had diverged from ${holds} (${why.join('; ')}); the stream is applied over it`);
  }
  if (!s.incremental) return { warnings };
  if (!s.baseId) {
    warnings.push(`the stream does not name its base or source (a plain LINBIT stream): applied as thin_recv does, nothing could be checked`);
    return { warnings };
  }
  if (!record) {
    if (!o.force) {
      throw new ThinshipError(
        'BASE_MISMATCH',
        `target ${s.target} has no thinship record, so nothing says it holds base ${s.baseId} of this incremental stream; nothing was written (send a full stream, or --force if you know it holds the base)`,
        { details: { target: s.target, base: s.baseId } },
      );
    }
    warnings.push(`--force: target ${s.target} has no record; base ${s.baseId} is taken on trust`);
    return { warnings };
  }
  if (record.sourceId !== s.baseId) {
    throw new ThinshipError(
      'BASE_MISMATCH',
      `target ${s.target} holds ${holds}, but this incremental stream applies to base ${s.baseId}: send the increment from ${record.sourceId}, or a full stream; nothing was written`,
      { details: { target: s.target, holds: record.sourceId, base: s.baseId } },
    );
  }
  return { warnings };
}
