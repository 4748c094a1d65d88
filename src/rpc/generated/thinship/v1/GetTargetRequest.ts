// Original file: proto/thinship/v1/receiver.proto


/**
 * Asks what one target holds.
 */
export interface GetTargetRequest {
  /**
   * The target, named as in Begin.target (an absolute path, or vg/lv).
   */
  'target'?: (string);
}

/**
 * Asks what one target holds.
 */
export interface GetTargetRequest__Output {
  /**
   * The target, named as in Begin.target (an absolute path, or vg/lv).
   */
  'target': (string);
}
