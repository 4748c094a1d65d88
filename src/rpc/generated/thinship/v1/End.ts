// Original file: proto/thinship/v1/receiver.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The last message of the stream. Counts cover the WHOLE transfer, including
 * records applied by earlier calls before a resume (a resuming sender adds
 * the TransferState counts to its own).
 */
export interface End {
  /**
   * data_records + unmap_records + 2 (Begin and End counted once, as the
   * LINBIT 1.1 END record counts them).
   */
  'records'?: (number | string | Long);
  /**
   * Number of Data records.
   */
  'dataRecords'?: (number | string | Long);
  /**
   * Number of Unmap records.
   */
  'unmapRecords'?: (number | string | Long);
  /**
   * Sum of Data.length_bytes.
   */
  'dataBytes'?: (number | string | Long);
  /**
   * Sum of Unmap.length_bytes.
   */
  'unmapBytes'?: (number | string | Long);
  /**
   * With SHA256 or BLAKE3: the stream digest, a hash chain over every Data and Unmap
   * record of the transfer in order:
   * d_0 = 32 zero bytes
   * d_i = sha256(d_{i-1} || kind u8 (0 Data, 1 Unmap) || offset u64 BE ||
   * length u64 BE || (Data: its 32-byte checksum;
   * Unmap: 32 zero bytes))
   * MUST equal the receiver's value, else DATA_LOSS. Empty with NONE.
   */
  'digest'?: (Buffer | Uint8Array | string);
}

/**
 * The last message of the stream. Counts cover the WHOLE transfer, including
 * records applied by earlier calls before a resume (a resuming sender adds
 * the TransferState counts to its own).
 */
export interface End__Output {
  /**
   * data_records + unmap_records + 2 (Begin and End counted once, as the
   * LINBIT 1.1 END record counts them).
   */
  'records': (number);
  /**
   * Number of Data records.
   */
  'dataRecords': (number);
  /**
   * Number of Unmap records.
   */
  'unmapRecords': (number);
  /**
   * Sum of Data.length_bytes.
   */
  'dataBytes': (number);
  /**
   * Sum of Unmap.length_bytes.
   */
  'unmapBytes': (number);
  /**
   * With SHA256 or BLAKE3: the stream digest, a hash chain over every Data and Unmap
   * record of the transfer in order:
   * d_0 = 32 zero bytes
   * d_i = sha256(d_{i-1} || kind u8 (0 Data, 1 Unmap) || offset u64 BE ||
   * length u64 BE || (Data: its 32-byte checksum;
   * Unmap: 32 zero bytes))
   * MUST equal the receiver's value, else DATA_LOSS. Empty with NONE.
   */
  'digest': (Buffer);
}
