/**
 * Test knobs of the receiver's target records, read from the environment here
 * at the edge (libraries read none) by the commands that apply streams:
 * THINSHIP_TARGET_RECORD=sidecar keeps records in sidecar files even where
 * xattrs work; THINSHIP_STAGING=journal never tries a reflink;
 * THINSHIP_METADATA_READER picks how an LVM target's divergence is read from
 * its pool metadata (as for plan and send).
 */
import { targetStateSettings } from '../receiver/target-state/record.js';
import { checkMetadataReaderChoice } from '../thin/metadata/native-plan.js';

export function applyTargetStateEnv(): void {
  targetStateSettings.forceSidecar = process.env.THINSHIP_TARGET_RECORD === 'sidecar';
  targetStateSettings.forceJournal = process.env.THINSHIP_STAGING === 'journal';
  targetStateSettings.metadataReader = checkMetadataReaderChoice(undefined, process.env.THINSHIP_METADATA_READER);
}
