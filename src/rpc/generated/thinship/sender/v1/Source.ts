// Original file: proto/thinship/sender/v1/sender.proto

import type { OfflinePool as _thinship_sender_v1_OfflinePool, OfflinePool__Output as _thinship_sender_v1_OfflinePool__Output } from '../../../thinship/sender/v1/OfflinePool.js';

/**
 * What to send: a snapshot (full) or the difference from a base (incremental).
 */
export interface Source {
  /**
   * The snapshot: an LVM name "vg/lv", or with offline_pool a thin device id
   * in decimal.
   */
  'snapshot'?: (string);
  /**
   * The base of an incremental (older than snapshot, same pool); empty: full.
   */
  'base'?: (string);
  /**
   * Set for an offline pool (metadata and data files or inactive devices).
   */
  'offlinePool'?: (_thinship_sender_v1_OfflinePool | null);
}

/**
 * What to send: a snapshot (full) or the difference from a base (incremental).
 */
export interface Source__Output {
  /**
   * The snapshot: an LVM name "vg/lv", or with offline_pool a thin device id
   * in decimal.
   */
  'snapshot': (string);
  /**
   * The base of an incremental (older than snapshot, same pool); empty: full.
   */
  'base': (string);
  /**
   * Set for an offline pool (metadata and data files or inactive devices).
   */
  'offlinePool': (_thinship_sender_v1_OfflinePool__Output | null);
}
