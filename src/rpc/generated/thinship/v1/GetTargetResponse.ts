// Original file: proto/thinship/v1/receiver.proto

import type { TargetRecord as _thinship_v1_TargetRecord, TargetRecord__Output as _thinship_v1_TargetRecord__Output } from '../../thinship/v1/TargetRecord.js';
import type { StagedApply as _thinship_v1_StagedApply, StagedApply__Output as _thinship_v1_StagedApply__Output } from '../../thinship/v1/StagedApply.js';

/**
 * The answer to GetTarget.
 */
export interface GetTargetResponse {
  /**
   * The target, as asked for.
   */
  'target'?: (string);
  /**
   * "file", "block-device" or "lvm" (a thin LV).
   */
  'kind'?: (string);
  /**
   * What the target holds; unset when it has no record (never received, or
   * last received a plain LINBIT stream, which names nothing).
   */
  'record'?: (_thinship_v1_TargetRecord | null);
  /**
   * Where the record is kept: "xattr", "sidecar", "state-dir" or "lv-tags";
   * empty without a record.
   */
  'recordStore'?: (string);
  /**
   * True when the target was written since its last commit (an apply then
   * fails with DIVERGED unless forced).
   */
  'diverged'?: (boolean);
  /**
   * How it diverged, one reason a line (size, times, I/O counters).
   */
  'divergence'?: (string)[];
  /**
   * Block devices: what could not be checked (writes made before a reboot
   * or a re-attach of the device); empty when everything was.
   */
  'divergenceUnchecked'?: (string);
  /**
   * Applies staged onto the target; empty when none.
   */
  'staged'?: (_thinship_v1_StagedApply)[];
  /**
   * Block devices: the identity the record is keyed by (loop backing file,
   * WWID, ...); empty for files.
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
 * The answer to GetTarget.
 */
export interface GetTargetResponse__Output {
  /**
   * The target, as asked for.
   */
  'target': (string);
  /**
   * "file", "block-device" or "lvm" (a thin LV).
   */
  'kind': (string);
  /**
   * What the target holds; unset when it has no record (never received, or
   * last received a plain LINBIT stream, which names nothing).
   */
  'record': (_thinship_v1_TargetRecord__Output | null);
  /**
   * Where the record is kept: "xattr", "sidecar", "state-dir" or "lv-tags";
   * empty without a record.
   */
  'recordStore': (string);
  /**
   * True when the target was written since its last commit (an apply then
   * fails with DIVERGED unless forced).
   */
  'diverged': (boolean);
  /**
   * How it diverged, one reason a line (size, times, I/O counters).
   */
  'divergence': (string)[];
  /**
   * Block devices: what could not be checked (writes made before a reboot
   * or a re-attach of the device); empty when everything was.
   */
  'divergenceUnchecked': (string);
  /**
   * Applies staged onto the target; empty when none.
   */
  'staged': (_thinship_v1_StagedApply__Output)[];
  /**
   * Block devices: the identity the record is keyed by (loop backing file,
   * WWID, ...); empty for files.
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
