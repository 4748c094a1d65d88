/**
 * Test knobs of the receiver's target records, read from the environment here
 * at the edge (libraries read none) by the commands that apply streams:
 * THINSHIP_TARGET_RECORD=sidecar keeps records in sidecar files even where
 * xattrs work; THINSHIP_STAGING=journal never tries a reflink.
 */
import { targetStateSettings } from '../receiver/target-state/record.js';

export function applyTargetStateEnv(): void {
  targetStateSettings.forceSidecar = process.env.THINSHIP_TARGET_RECORD === 'sidecar';
  targetStateSettings.forceJournal = process.env.THINSHIP_STAGING === 'journal';
}
