/** Block device and file I/O for senders and receivers. */
export { openVolume, VolumeHandle, type OpenVolumeOptions, type VolumeKind, type VolumeMode } from './volume.js';
export { planZeroRange, type ZeroPiece, type ZeroPieceKind, type ZeroPlanLimits } from './zero-plan.js';
export { readBlockLimits, devMajorMinor, discardZeroesKnown, dmTargetTypes, type BlockLimits } from './block-info.js';
export { nativeDevice, type NativeDevice, type FadviseAdvice } from './native.js';
