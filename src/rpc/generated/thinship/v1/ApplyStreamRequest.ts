// Original file: proto/thinship/v1/receiver.proto

import type { Begin as _thinship_v1_Begin, Begin__Output as _thinship_v1_Begin__Output } from '../../thinship/v1/Begin.js';
import type { Data as _thinship_v1_Data, Data__Output as _thinship_v1_Data__Output } from '../../thinship/v1/Data.js';
import type { Unmap as _thinship_v1_Unmap, Unmap__Output as _thinship_v1_Unmap__Output } from '../../thinship/v1/Unmap.js';
import type { End as _thinship_v1_End, End__Output as _thinship_v1_End__Output } from '../../thinship/v1/End.js';

/**
 * One message of an ApplyStream call. Exactly one field of `kind` MUST be set.
 */
export interface ApplyStreamRequest {
  /**
   * The first message of the call, and only the first.
   */
  'begin'?: (_thinship_v1_Begin | null);
  /**
   * Bytes to write.
   */
  'data'?: (_thinship_v1_Data | null);
  /**
   * A range to make read back as zeros.
   */
  'unmap'?: (_thinship_v1_Unmap | null);
  /**
   * The last message of the call.
   */
  'end'?: (_thinship_v1_End | null);
  /**
   * The record this message carries; a message with none set is refused
   * with INVALID_ARGUMENT.
   */
  'kind'?: "begin"|"data"|"unmap"|"end";
}

/**
 * One message of an ApplyStream call. Exactly one field of `kind` MUST be set.
 */
export interface ApplyStreamRequest__Output {
  /**
   * The first message of the call, and only the first.
   */
  'begin'?: (_thinship_v1_Begin__Output | null);
  /**
   * Bytes to write.
   */
  'data'?: (_thinship_v1_Data__Output | null);
  /**
   * A range to make read back as zeros.
   */
  'unmap'?: (_thinship_v1_Unmap__Output | null);
  /**
   * The last message of the call.
   */
  'end'?: (_thinship_v1_End__Output | null);
  /**
   * The record this message carries; a message with none set is refused
   * with INVALID_ARGUMENT.
   */
  'kind'?: "begin"|"data"|"unmap"|"end";
}
