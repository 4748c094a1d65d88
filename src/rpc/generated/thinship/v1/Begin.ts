// Original file: proto/thinship/v1/receiver.proto

import type { TransferMode as _thinship_v1_TransferMode, TransferMode__Output as _thinship_v1_TransferMode__Output } from '../../thinship/v1/TransferMode.js';
import type { Compression as _thinship_v1_Compression, Compression__Output as _thinship_v1_Compression__Output } from '../../thinship/v1/Compression.js';
import type { ChecksumAlgorithm as _thinship_v1_ChecksumAlgorithm, ChecksumAlgorithm__Output as _thinship_v1_ChecksumAlgorithm__Output } from '../../thinship/v1/ChecksumAlgorithm.js';
import type { Long } from '@grpc/proto-loader';

/**
 * The first message of every ApplyStream call.
 */
export interface Begin {
  /**
   * MUST be 1 for this version of the API. Checked before every other field:
   * a receiver that speaks another version refuses with FAILED_PRECONDITION
   * naming both versions.
   */
  'protocolVersion'?: (number);
  /**
   * Identifies the transfer across resumes: 1 to 128 characters from
   * [A-Za-z0-9._-]. A sender SHOULD derive it from the target and the
   * snapshots' identities so that a re-run after a crash resumes, and MUST
   * use the same id when resuming. Reusing an id with a different target,
   * mode, source, base or volume size is refused with FAILED_PRECONDITION.
   */
  'transferId'?: (string);
  /**
   * What to write, as the receiver's configuration names it: an LVM thin LV
   * "vg/lv", or an absolute path of a file or block device. The receiver
   * resolves it only if the client's identity is allowed to write it
   * (PERMISSION_DENIED otherwise, and nothing is opened). Another transfer
   * holding the same target (running, or resumable and not yet expired)
   * makes the receiver refuse with ABORTED ("TRANSFER_BUSY").
   */
  'target'?: (string);
  /**
   * MUST be FULL or INCREMENTAL.
   */
  'mode'?: (_thinship_v1_TransferMode);
  /**
   * Size of the source volume. MUST be > 0. Every record MUST lie within
   * [0, volume_size_bytes). A file target that does not exist is created
   * sparse at this size; a block device smaller than this is refused with
   * FAILED_PRECONDITION ("TARGET_TOO_SMALL").
   */
  'volumeSizeBytes'?: (number | string | Long);
  /**
   * The source pool's block (chunk) size. SHOULD be set; informative.
   */
  'blockSizeBytes'?: (number | string | Long);
  /**
   * Identity of the snapshot being sent (LV uuid for LVM). MUST be set.
   */
  'sourceId'?: (string);
  /**
   * Identity of the base snapshot; MUST be set for INCREMENTAL and MUST be
   * empty for FULL.
   */
  'baseId'?: (string);
  /**
   * Bytes of Data the whole transfer will carry (for progress and space
   * checks). SHOULD be set; not enforced.
   */
  'plannedDataBytes'?: (number | string | Long);
  /**
   * Bytes of Unmap the whole transfer will carry. SHOULD be set; not
   * enforced.
   */
  'plannedUnmapBytes'?: (number | string | Long);
  /**
   * 0 for a new transfer. When resuming, MUST equal
   * TransferState.durable_offset_bytes of this transfer; otherwise the
   * receiver refuses with FAILED_PRECONDITION ("RESUME_MISMATCH") and the
   * sender SHOULD ask GetTransferState again. Every record of this call MUST
   * start at or above it.
   */
  'resumeOffsetBytes'?: (number | string | Long);
  /**
   * Whether Data MAY be zstd-compressed: NONE or ZSTD.
   */
  'compression'?: (_thinship_v1_Compression);
  /**
   * MUST be BLAKE3, SHA256 or NONE; a receiver MAY refuse NONE
   * (FAILED_PRECONDITION). A resumed transfer MUST use the algorithm it
   * began with (TransferState.checksum).
   */
  'checksum'?: (_thinship_v1_ChecksumAlgorithm);
  /**
   * The sender's --force, as on `thinship recv` (and `zfs recv -F`): apply
   * over a target written since its last received snapshot (else
   * FAILED_PRECONDITION, reason "DIVERGED"), or an incremental onto a target
   * that has no record of what it holds (else reason "BASE_MISMATCH"). It
   * never makes a wrong base right.
   */
  'force'?: (boolean);
  /**
   * The sender's --grow: extend an existing file target smaller than
   * volume_size_bytes (else FAILED_PRECONDITION, reason "TARGET_TOO_SMALL").
   */
  'grow'?: (boolean);
  /**
   * The source snapshot's name when the sender says it (an LVM source:
   * "vg0/snap2"); empty: not said. Informative: the receiver records it and
   * names an LVM target's received snapshot after it (LV.snap2).
   */
  'sourceName'?: (string);
}

/**
 * The first message of every ApplyStream call.
 */
export interface Begin__Output {
  /**
   * MUST be 1 for this version of the API. Checked before every other field:
   * a receiver that speaks another version refuses with FAILED_PRECONDITION
   * naming both versions.
   */
  'protocolVersion': (number);
  /**
   * Identifies the transfer across resumes: 1 to 128 characters from
   * [A-Za-z0-9._-]. A sender SHOULD derive it from the target and the
   * snapshots' identities so that a re-run after a crash resumes, and MUST
   * use the same id when resuming. Reusing an id with a different target,
   * mode, source, base or volume size is refused with FAILED_PRECONDITION.
   */
  'transferId': (string);
  /**
   * What to write, as the receiver's configuration names it: an LVM thin LV
   * "vg/lv", or an absolute path of a file or block device. The receiver
   * resolves it only if the client's identity is allowed to write it
   * (PERMISSION_DENIED otherwise, and nothing is opened). Another transfer
   * holding the same target (running, or resumable and not yet expired)
   * makes the receiver refuse with ABORTED ("TRANSFER_BUSY").
   */
  'target': (string);
  /**
   * MUST be FULL or INCREMENTAL.
   */
  'mode': (_thinship_v1_TransferMode__Output);
  /**
   * Size of the source volume. MUST be > 0. Every record MUST lie within
   * [0, volume_size_bytes). A file target that does not exist is created
   * sparse at this size; a block device smaller than this is refused with
   * FAILED_PRECONDITION ("TARGET_TOO_SMALL").
   */
  'volumeSizeBytes': (number);
  /**
   * The source pool's block (chunk) size. SHOULD be set; informative.
   */
  'blockSizeBytes': (number);
  /**
   * Identity of the snapshot being sent (LV uuid for LVM). MUST be set.
   */
  'sourceId': (string);
  /**
   * Identity of the base snapshot; MUST be set for INCREMENTAL and MUST be
   * empty for FULL.
   */
  'baseId': (string);
  /**
   * Bytes of Data the whole transfer will carry (for progress and space
   * checks). SHOULD be set; not enforced.
   */
  'plannedDataBytes': (number);
  /**
   * Bytes of Unmap the whole transfer will carry. SHOULD be set; not
   * enforced.
   */
  'plannedUnmapBytes': (number);
  /**
   * 0 for a new transfer. When resuming, MUST equal
   * TransferState.durable_offset_bytes of this transfer; otherwise the
   * receiver refuses with FAILED_PRECONDITION ("RESUME_MISMATCH") and the
   * sender SHOULD ask GetTransferState again. Every record of this call MUST
   * start at or above it.
   */
  'resumeOffsetBytes': (number);
  /**
   * Whether Data MAY be zstd-compressed: NONE or ZSTD.
   */
  'compression': (_thinship_v1_Compression__Output);
  /**
   * MUST be BLAKE3, SHA256 or NONE; a receiver MAY refuse NONE
   * (FAILED_PRECONDITION). A resumed transfer MUST use the algorithm it
   * began with (TransferState.checksum).
   */
  'checksum': (_thinship_v1_ChecksumAlgorithm__Output);
  /**
   * The sender's --force, as on `thinship recv` (and `zfs recv -F`): apply
   * over a target written since its last received snapshot (else
   * FAILED_PRECONDITION, reason "DIVERGED"), or an incremental onto a target
   * that has no record of what it holds (else reason "BASE_MISMATCH"). It
   * never makes a wrong base right.
   */
  'force': (boolean);
  /**
   * The sender's --grow: extend an existing file target smaller than
   * volume_size_bytes (else FAILED_PRECONDITION, reason "TARGET_TOO_SMALL").
   */
  'grow': (boolean);
  /**
   * The source snapshot's name when the sender says it (an LVM source:
   * "vg0/snap2"); empty: not said. Informative: the receiver records it and
   * names an LVM target's received snapshot after it (LV.snap2).
   */
  'sourceName': (string);
}
