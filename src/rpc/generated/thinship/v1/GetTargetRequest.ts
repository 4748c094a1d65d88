// Original file: proto/thinship/v1/receiver.proto


/**
 * Asks what one target holds.
 */
export interface GetTargetRequest {
  /**
   * The target, named as in Begin.target and resolved by the same rules:
   * an absolute path of a file or block device (symbolic links are followed
   * and must stay inside an allowed directory). "vg/lv" (or the thin LV's
   * /dev/vg/lv path) names an LVM target.
   */
  'target'?: (string);
}

/**
 * Asks what one target holds.
 */
export interface GetTargetRequest__Output {
  /**
   * The target, named as in Begin.target and resolved by the same rules:
   * an absolute path of a file or block device (symbolic links are followed
   * and must stay inside an allowed directory). "vg/lv" (or the thin LV's
   * /dev/vg/lv path) names an LVM target.
   */
  'target': (string);
}
