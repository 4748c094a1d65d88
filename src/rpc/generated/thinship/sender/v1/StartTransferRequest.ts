// Original file: proto/thinship/sender/v1/sender.proto

import type { Source as _thinship_sender_v1_Source, Source__Output as _thinship_sender_v1_Source__Output } from '../../../thinship/sender/v1/Source.js';
import type { Destination as _thinship_sender_v1_Destination, Destination__Output as _thinship_sender_v1_Destination__Output } from '../../../thinship/sender/v1/Destination.js';
import type { TransferOptions as _thinship_sender_v1_TransferOptions, TransferOptions__Output as _thinship_sender_v1_TransferOptions__Output } from '../../../thinship/sender/v1/TransferOptions.js';

/**
 * Request of StartTransfer.
 */
export interface StartTransferRequest {
  /**
   * Chosen by the caller (1-128 of [A-Za-z0-9._-]): a repeat returns the same transfer.
   */
  'requestId'?: (string);
  /**
   * What to send.
   */
  'source'?: (_thinship_sender_v1_Source | null);
  /**
   * Where to send it.
   */
  'destination'?: (_thinship_sender_v1_Destination | null);
  /**
   * How.
   */
  'options'?: (_thinship_sender_v1_TransferOptions | null);
}

/**
 * Request of StartTransfer.
 */
export interface StartTransferRequest__Output {
  /**
   * Chosen by the caller (1-128 of [A-Za-z0-9._-]): a repeat returns the same transfer.
   */
  'requestId': (string);
  /**
   * What to send.
   */
  'source': (_thinship_sender_v1_Source__Output | null);
  /**
   * Where to send it.
   */
  'destination': (_thinship_sender_v1_Destination__Output | null);
  /**
   * How.
   */
  'options': (_thinship_sender_v1_TransferOptions__Output | null);
}
