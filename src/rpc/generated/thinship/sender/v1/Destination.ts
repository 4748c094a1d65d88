// Original file: proto/thinship/sender/v1/sender.proto


/**
 * Where a send goes.
 */
export interface Destination {
  /**
   * HOST:PORT of a thinship receiver (`thinship serve`).
   */
  'receiverAddress'?: (string);
  /**
   * Name to verify the receiver's certificate against; empty: the host.
   */
  'serverName'?: (string);
  /**
   * The target on the receiver: "vg/lv" or an absolute path its config allows.
   */
  'target'?: (string);
}

/**
 * Where a send goes.
 */
export interface Destination__Output {
  /**
   * HOST:PORT of a thinship receiver (`thinship serve`).
   */
  'receiverAddress': (string);
  /**
   * Name to verify the receiver's certificate against; empty: the host.
   */
  'serverName': (string);
  /**
   * The target on the receiver: "vg/lv" or an absolute path its config allows.
   */
  'target': (string);
}
