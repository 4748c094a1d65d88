/**
 * Prometheus metrics of the receiver (prom-client: the text format, process
 * metrics and histograms are what every Node service uses; writing them by
 * hand would only be a worse copy). Names follow Prometheus conventions: a
 * `thinship_receiver_` prefix, the unit in the name, `_total` on counters.
 * Labels are bounded sets only (an error code, an outcome, a record kind, a TLS
 * refusal reason class): never transfer ids, identities or targets, whose number
 * a client controls.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from '../errors.js';

/** Classes of refused TLS handshakes (the log line has the detail). */
export type TlsRefusalReason = 'unknown_ca' | 'expired' | 'no_certificate' | 'not_tls' | 'other';

export interface ReceiverMetrics {
  registry: Registry;
  /** Payload bytes as they arrived (compressed where the sender compressed). */
  wireBytes: Counter;
  writtenBytes: Counter;
  discardedBytes: Counter;
  /** kind: data (all-zero chunks included) or unmap. */
  records: Counter<'kind'>;
  /**
   * How a transfer's call ended (outcome): complete; checkpointed (a retryable stop: broken link,
   * idle, receiver stopping: the sender resumes); aborted (AbortTransfer or a takeover); failed
   * (refused or bad stream).
   */
  transfers: Counter<'outcome' | 'code'>;
  activeTransfers: Gauge;
  resumes: Counter;
  checkpointSeconds: Histogram;
  commitSeconds: Histogram;
  tlsRefusals: Counter<'reason'>;
  /** Time transfers waited for their identity's maxBytesPerSecond. */
  throttledSeconds: Counter;
  /** Successful reloads of the config on SIGHUP, and refused ones (the old config kept). */
  configReloads: Counter<'result'>;
}

/**
 * One registry per receiver (not prom-client's global one), so tests and two receivers in one process never mix.
 * `now.decodeQueueDepth` is read when scraped.
 */
export function createReceiverMetrics(now: { decodeQueueDepth(): number } = { decodeQueueDepth: () => 0 }): ReceiverMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'thinship_receiver_' });
  const registers = [registry];
  new Gauge({
    name: 'thinship_receiver_decode_queue_depth',
    help: 'Records handed to the decode workers (decompress, checksum) and not yet back',
    registers,
    collect() {
      this.set(now.decodeQueueDepth());
    },
  });
  return {
    registry,
    wireBytes: new Counter({ name: 'thinship_receiver_wire_bytes_total', help: 'DATA payload bytes received, as sent (compressed or raw)', registers }),
    writtenBytes: new Counter({
      name: 'thinship_receiver_written_bytes_total',
      help: 'Bytes written to targets (uncompressed DATA, zero ranges written as zeros included)',
      registers,
    }),
    discardedBytes: new Counter({ name: 'thinship_receiver_discarded_bytes_total', help: 'Bytes of targets unmapped or zeroed by UNMAP records', registers }),
    records: new Counter({
      name: 'thinship_receiver_records_total',
      help: 'Records applied, by kind (data includes all-zero chunks)',
      labelNames: ['kind'] as const,
      registers,
    }),
    transfers: new Counter({
      name: 'thinship_receiver_transfers_total',
      help: 'ApplyStream calls that ended, by outcome and error code ("" when none)',
      labelNames: ['outcome', 'code'] as const,
      registers,
    }),
    activeTransfers: new Gauge({ name: 'thinship_receiver_active_transfers', help: 'ApplyStream calls running now', registers }),
    resumes: new Counter({ name: 'thinship_receiver_resumes_total', help: 'Transfers continued from a checkpoint', registers }),
    checkpointSeconds: new Histogram({
      name: 'thinship_receiver_checkpoint_duration_seconds',
      help: 'Time to flush the target and write a checkpoint',
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
      registers,
    }),
    commitSeconds: new Histogram({
      name: 'thinship_receiver_commit_duration_seconds',
      help: 'Time from a validated End to the transfer recorded complete (flush included)',
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
      registers,
    }),
    tlsRefusals: new Counter({
      name: 'thinship_receiver_tls_handshake_failures_total',
      help: 'TLS handshakes refused, by reason class',
      labelNames: ['reason'] as const,
      registers,
    }),
    throttledSeconds: new Counter({
      name: 'thinship_receiver_bandwidth_limit_wait_seconds_total',
      help: "Time transfers waited before reading their next message, held to their identity's maxBytesPerSecond",
      registers,
    }),
    configReloads: reloadCounter('thinship_receiver_', registers),
  };
}

/** The error-code label: a thinship code, or "" for an outcome without an error. */
export function codeLabel(code: ErrorCode | undefined): string {
  return code ?? '';
}

/** Maps an OpenSSL/Node verification code or error to a bounded reason class. */
export function tlsRefusalReason(code: string | undefined): TlsRefusalReason {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
    case 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED':
      return 'expired';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return 'unknown_ca';
    case 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE':
    case 'ERR_SSL_NO_CERTIFICATE_RETURNED':
      return 'no_certificate';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_HTTP_REQUEST':
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
      return 'not_tls';
    default:
      return 'other';
  }
}

function reloadCounter(prefix: string, registers: Registry[]): Counter<'result'> {
  return new Counter({
    name: `${prefix}config_reloads_total`,
    help: 'Config reloads on SIGHUP, by result (ok; error: the old config kept)',
    labelNames: ['result'] as const,
    registers,
  });
}

export interface SenderMetrics {
  registry: Registry;
  /** DATA payload bytes the receivers acknowledged... as sent: compressed where compressed. */
  sentBytes: Counter;
  transfers: Counter<'outcome' | 'code'>;
  /** Resumes after a broken call (each retry of a transfer). */
  retries: Counter;
  configReloads: Counter<'result'>;
}

/**
 * The sender daemon's metrics (`sender-serve --metrics-listen`, config
 * `metricsListen`). Gauges of what runs now are read when scraped (`collect`),
 * from the functions given, so they cannot drift from the manager's state.
 */
export function createSenderMetrics(now: { active(): number; queued(): number; compressQueueDepth(): number }): SenderMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'thinship_sender_' });
  const registers = [registry];
  new Gauge({
    name: 'thinship_sender_active_transfers',
    help: 'Transfers planning, sending, resuming or committing now',
    registers,
    collect() {
      this.set(now.active());
    },
  });
  new Gauge({
    name: 'thinship_sender_queued_transfers',
    help: 'Transfers waiting for their pool or a slot (maxActiveTransfers)',
    registers,
    collect() {
      this.set(now.queued());
    },
  });
  new Gauge({
    name: 'thinship_sender_compress_queue_depth',
    help: 'Chunks handed to the compression workers and not yet back',
    registers,
    collect() {
      this.set(now.compressQueueDepth());
    },
  });
  return {
    registry,
    sentBytes: new Counter({
      name: 'thinship_sender_sent_bytes_total',
      help: 'DATA payload bytes sent to receivers (compressed where compressed; re-sent bytes after a resume included)',
      registers,
    }),
    transfers: new Counter({
      name: 'thinship_sender_transfers_total',
      help: 'Transfers that ended, by outcome and error code ("" when none)',
      labelNames: ['outcome', 'code'] as const,
      registers,
    }),
    retries: new Counter({ name: 'thinship_sender_retries_total', help: 'Transfers resumed after a broken or refused call', registers }),
    configReloads: reloadCounter('thinship_sender_', registers),
  };
}
