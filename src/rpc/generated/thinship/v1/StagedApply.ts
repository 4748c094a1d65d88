// Original file: proto/thinship/v1/receiver.proto


/**
 * A staging file or undo journal of an apply onto the target: running,
 * resumable, or interrupted (rolled back at the next apply or start).
 */
export interface StagedApply {
  /**
   * "staging" (a staging file renamed over the target at commit),
   * "undo-journal" (the old bytes of an apply written in place),
   * "staging-lv" (LVM: the staging thin LV that becomes the target at
   * commit) or "commit-journal" (LVM: a commit interrupted between its
   * renames, finished at the next apply or start).
   */
  'kind'?: (string);
}

/**
 * A staging file or undo journal of an apply onto the target: running,
 * resumable, or interrupted (rolled back at the next apply or start).
 */
export interface StagedApply__Output {
  /**
   * "staging" (a staging file renamed over the target at commit),
   * "undo-journal" (the old bytes of an apply written in place),
   * "staging-lv" (LVM: the staging thin LV that becomes the target at
   * commit) or "commit-journal" (LVM: a commit interrupted between its
   * renames, finished at the next apply or start).
   */
  'kind': (string);
}
