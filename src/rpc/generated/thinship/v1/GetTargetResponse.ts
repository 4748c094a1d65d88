// Original file: proto/thinship/v1/receiver.proto

import type { TargetRecord as _thinship_v1_TargetRecord, TargetRecord__Output as _thinship_v1_TargetRecord__Output } from '../../thinship/v1/TargetRecord.js';
import type { StagedApply as _thinship_v1_StagedApply, StagedApply__Output as _thinship_v1_StagedApply__Output } from '../../thinship/v1/StagedApply.js';

/**
 * The answer to GetTarget. The strings meant for people (divergence,
 * divergence_unchecked, identity) are not a stable format: show them, do
 * not parse them.
 */
export interface GetTargetResponse {
  /**
   * The target, as asked for (GetTargetRequest.target, not resolved).
   */
  'target'?: (string);
  /**
   * "file" (a regular file), "block-device" or "lvm" (a thin LV). A client
   * treats another value as a kind it does not know.
   */
  'kind'?: (string);
  /**
   * What the target holds; unset (not an empty message: test for presence)
   * when it has no record: it never received a stream with a source_id, or
   * it last received a plain LINBIT stream, which names nothing. An
   * incremental that names its base is then refused (BASE_MISMATCH) unless
   * forced.
   */
  'record'?: (_thinship_v1_TargetRecord | null);
  /**
   * Where the record is kept: "xattr" (the file's extended attributes
   * user.thinship.*), "sidecar" (a file beside the target, where the file
   * system has no xattrs), "state-dir" (the receiver's state directory,
   * block devices) or "lv-tags" (the LV's tags thinship.KEY:VALUE, LVM);
   * empty without a record.
   */
  'recordStore'?: (string);
  /**
   * True when the target was written by anyone but the receiver since its
   * last commit: an apply onto it then fails with FAILED_PRECONDITION,
   * reason DIVERGED, unless Begin.force. Files: by size, mtime, ctime and
   * inode recorded at commit; block devices: by size and the kernel's I/O
   * counters (loop devices also their backing file). Always false without
   * a record.
   */
  'diverged'?: (boolean);
  /**
   * How it diverged, one reason each (e.g. the size or mtime now and at the
   * commit); empty when diverged is false.
   */
  'divergence'?: (string)[];
  /**
   * Block devices: what could not be checked (writes made before a reboot
   * or a re-attach of the device); empty when everything was, and always
   * for files.
   */
  'divergenceUnchecked'?: (string);
  /**
   * Applies staged onto the target that have not committed; empty when
   * none. Their files' paths are not told.
   */
  'staged'?: (_thinship_v1_StagedApply)[];
  /**
   * Block devices: the identity the record is keyed by (a loop device's
   * backing file, a dm uuid, a WWID, ...), which follows the content rather
   * than the device node; empty for files.
   */
  'identity'?: (string);
  /**
   * LVM: the target's last received snapshot (vg/lv), what divergence is
   * measured against; empty when none.
   */
  'lastSnapshot'?: (string);
  /**
   * LVM: the received snapshots kept (vg/lv), newest first.
   */
  'keptSnapshots'?: (string)[];
}

/**
 * The answer to GetTarget. The strings meant for people (divergence,
 * divergence_unchecked, identity) are not a stable format: show them, do
 * not parse them.
 */
export interface GetTargetResponse__Output {
  /**
   * The target, as asked for (GetTargetRequest.target, not resolved).
   */
  'target': (string);
  /**
   * "file" (a regular file), "block-device" or "lvm" (a thin LV). A client
   * treats another value as a kind it does not know.
   */
  'kind': (string);
  /**
   * What the target holds; unset (not an empty message: test for presence)
   * when it has no record: it never received a stream with a source_id, or
   * it last received a plain LINBIT stream, which names nothing. An
   * incremental that names its base is then refused (BASE_MISMATCH) unless
   * forced.
   */
  'record': (_thinship_v1_TargetRecord__Output | null);
  /**
   * Where the record is kept: "xattr" (the file's extended attributes
   * user.thinship.*), "sidecar" (a file beside the target, where the file
   * system has no xattrs), "state-dir" (the receiver's state directory,
   * block devices) or "lv-tags" (the LV's tags thinship.KEY:VALUE, LVM);
   * empty without a record.
   */
  'recordStore': (string);
  /**
   * True when the target was written by anyone but the receiver since its
   * last commit: an apply onto it then fails with FAILED_PRECONDITION,
   * reason DIVERGED, unless Begin.force. Files: by size, mtime, ctime and
   * inode recorded at commit; block devices: by size and the kernel's I/O
   * counters (loop devices also their backing file). Always false without
   * a record.
   */
  'diverged': (boolean);
  /**
   * How it diverged, one reason each (e.g. the size or mtime now and at the
   * commit); empty when diverged is false.
   */
  'divergence': (string)[];
  /**
   * Block devices: what could not be checked (writes made before a reboot
   * or a re-attach of the device); empty when everything was, and always
   * for files.
   */
  'divergenceUnchecked': (string);
  /**
   * Applies staged onto the target that have not committed; empty when
   * none. Their files' paths are not told.
   */
  'staged': (_thinship_v1_StagedApply__Output)[];
  /**
   * Block devices: the identity the record is keyed by (a loop device's
   * backing file, a dm uuid, a WWID, ...), which follows the content rather
   * than the device node; empty for files.
   */
  'identity': (string);
  /**
   * LVM: the target's last received snapshot (vg/lv), what divergence is
   * measured against; empty when none.
   */
  'lastSnapshot': (string);
  /**
   * LVM: the received snapshots kept (vg/lv), newest first.
   */
  'keptSnapshots': (string)[];
}
