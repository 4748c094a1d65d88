// Original file: proto/thinship/sender/v1/sender.proto

import type { Source as _thinship_sender_v1_Source, Source__Output as _thinship_sender_v1_Source__Output } from '../../../thinship/sender/v1/Source.js';
import type { Long } from '@grpc/proto-loader';

/**
 * Request of Plan.
 */
export interface PlanRequest {
  /**
   * What would be sent.
   */
  'source'?: (_thinship_sender_v1_Source | null);
  /**
   * Split operations larger than this; 0: 1 MiB.
   */
  'maxOpBytes'?: (number | string | Long);
}

/**
 * Request of Plan.
 */
export interface PlanRequest__Output {
  /**
   * What would be sent.
   */
  'source': (_thinship_sender_v1_Source__Output | null);
  /**
   * Split operations larger than this; 0: 1 MiB.
   */
  'maxOpBytes': (number);
}
