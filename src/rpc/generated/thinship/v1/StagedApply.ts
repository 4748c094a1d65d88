// Original file: proto/thinship/v1/receiver.proto


/**
 * A staging file or undo journal of an apply onto the target that has not
 * committed: running, resumable (a broken stream whose transfer the
 * receiver still remembers), or interrupted (rolled back at the next apply
 * or receiver start). Until it commits, the target reads back as the
 * record's snapshot (a file) or is restored to it by the journal; an
 * AbortTransfer or the transfer's expiry removes it.
 */
export interface StagedApply {
  /**
   * "staging" (a file beside the target, written by the apply and renamed
   * over the target at commit), "undo-journal" (the target is written in
   * place; the journal holds the old bytes to roll back), "staging-lv"
   * (LVM: the staging thin LV that becomes the target at commit) or
   * "commit-journal" (LVM: a commit interrupted between its renames,
   * finished at the next apply or receiver start). A client treats another
   * value as a kind it does not know.
   */
  'kind'?: (string);
}

/**
 * A staging file or undo journal of an apply onto the target that has not
 * committed: running, resumable (a broken stream whose transfer the
 * receiver still remembers), or interrupted (rolled back at the next apply
 * or receiver start). Until it commits, the target reads back as the
 * record's snapshot (a file) or is restored to it by the journal; an
 * AbortTransfer or the transfer's expiry removes it.
 */
export interface StagedApply__Output {
  /**
   * "staging" (a file beside the target, written by the apply and renamed
   * over the target at commit), "undo-journal" (the target is written in
   * place; the journal holds the old bytes to roll back), "staging-lv"
   * (LVM: the staging thin LV that becomes the target at commit) or
   * "commit-journal" (LVM: a commit interrupted between its renames,
   * finished at the next apply or receiver start). A client treats another
   * value as a kind it does not know.
   */
  'kind': (string);
}
