/**
 * The receiver's configuration file (JSON). Relative paths are taken from the
 * file's directory. Example:
 *
 *   {
 *     "tls": { "ca": "ca.crt", "cert": "server.crt", "key": "server.key" },
 *     "stateDir": "/var/lib/thinship",
 *     "checkpointIntervalBytes": 67108864,
 *     "transferExpirySeconds": 86400,
 *     "maxChunkBytes": 4194304,
 *     "decodeWorkers": 2,
 *     "receiveWindowBytes": 33554432,
 *     "connectionWindowBytes": 33554432,
 *     "maxActiveTransfers": 16,
 *     "maxActiveTransfersPerIdentity": 8,
 *     "maxStoredTransfersPerIdentity": 64,
 *     "maxCompletedTransfersPerIdentity": 1024,
 *     "maxVolumeBytes": 1125899906842624,
 *     "idleTimeoutSeconds": 60,
 *     "minBytesPerSecond": 16384,
 *     "progressWindowSeconds": 60,
 *     "maxBufferedBytes": 268435456,
 *     "keepSnapshots": 2,
 *     "identities": {
 *       "backup-sender": {
 *         "lvm": [{ "vg": "vg0", "pool": "pool0", "lv": "backup-*" }],
 *         "directories": ["/srv/images"],
 *         "devices": ["/dev/loop7"],
 *         "maxBytesPerSecond": 52428800
 *       }
 *     }
 *   }
 *
 * An identity is a client certificate's subject CN or any of its SAN values;
 * with --insecure every client is "anonymous".
 */
import { ThinshipError } from '../errors.js';
import { ConfigObject, readConfigJson } from './config-file.js';
import { parseAccessRules, type AccessPolicy } from '../receiver/access.js';
import type { TlsFiles } from './tls.js';
import {
  DEFAULT_CHECKPOINT_INTERVAL_BYTES,
  DEFAULT_MAX_CHUNK_BYTES,
  DEFAULT_TRANSFER_EXPIRY_MS,
  DEFAULT_MAX_ACTIVE_TRANSFERS,
  DEFAULT_MAX_STORED_TRANSFERS_PER_IDENTITY,
  DEFAULT_MAX_COMPLETED_TRANSFERS_PER_IDENTITY,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MIN_BYTES_PER_SECOND,
  DEFAULT_PROGRESS_WINDOW_MS,
  defaultMaxActivePerIdentity,
  DEFAULT_MAX_BUFFERED_BYTES,
  MESSAGE_OVERHEAD_BYTES,
} from '../receiver/transfers.js';
import { DEFAULT_MAX_VOLUME_BYTES } from '../receiver/record-checks.js';
import { DEFAULT_STATE_DIR } from '../receiver/target-state/device-stage.js';
import { DEFAULT_RECEIVE_WINDOW_BYTES, HTTP2_DEFAULT_WINDOW_BYTES, HTTP2_MAX_WINDOW_BYTES } from './http2-window.js';
import { defaultWorkerCount } from '../stream/worker-pool.js';
import { DEFAULT_KEEP_SNAPSHOTS, MAX_KEEP_SNAPSHOTS } from '../receiver/target-state/lvm-target.js';

/** At least 1 (the last received snapshot is what divergence is measured against), at most MAX_KEEP_SNAPSHOTS. */
function keepSnapshotsOf(n: number, file: string): number {
  if (n > MAX_KEEP_SNAPSHOTS) throw new ThinshipError('USAGE', `${file}: "keepSnapshots" must be at most ${MAX_KEEP_SNAPSHOTS}`);
  return n;
}

export interface ReceiverConfig {
  file: string;
  tls?: TlsFiles;
  stateDir: string;
  checkpointIntervalBytes: number;
  transferExpiryMs: number;
  maxChunkBytes: number;
  /** HTTP/2 receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE). */
  receiveWindowBytes: number;
  /** HTTP/2 receive window of each connection; unset: the stream window. */
  connectionWindowBytes?: number;
  maxActiveTransfers: number;
  maxActiveTransfersPerIdentity: number;
  maxStoredTransfersPerIdentity: number;
  maxCompletedTransfersPerIdentity: number;
  maxVolumeBytes: number;
  idleTimeoutMs: number;
  /** 0: no progress check (the idle timeout still applies). */
  minBytesPerSecond: number;
  progressWindowMs: number;
  /** HOST:PORT of the plain-HTTP /metrics, /healthz, /readyz listener (ops/ops-listener.ts); unset: none. */
  metricsListen?: string;
  /** Memory all running transfers may hold at once (HTTP/2 windows and records in the pipeline). */
  maxBufferedBytes: number;
  requireChecksum: boolean;
  /** Threads that decompress and checksum DATA (0: the main thread). */
  decodeWorkers: number;
  /** LVM targets: received snapshots kept per target (recv --keep-snapshots in pipe mode). */
  keepSnapshots: number;
  policy: AccessPolicy;
}

const KEYS = [
  'tls',
  'stateDir',
  'checkpointIntervalBytes',
  'transferExpirySeconds',
  'maxChunkBytes',
  'receiveWindowBytes',
  'connectionWindowBytes',
  'maxActiveTransfers',
  'maxActiveTransfersPerIdentity',
  'maxStoredTransfersPerIdentity',
  'maxCompletedTransfersPerIdentity',
  'maxVolumeBytes',
  'idleTimeoutSeconds',
  'minBytesPerSecond',
  'progressWindowSeconds',
  'maxBufferedBytes',
  'requireChecksum',
  'decodeWorkers',
  'metricsListen',
  'keepSnapshots',
  'identities',
];

export async function loadReceiverConfig(file: string): Promise<ReceiverConfig> {
  return parseReceiverConfig(await readConfigJson(file, 'receiver'), file);
}

export async function parseReceiverConfig(v: unknown, file: string): Promise<ReceiverConfig> {
  const c = new ConfigObject(v, file, KEYS);
  const uint = (k: string, dflt: number, min = 1) => c.uint(k, dflt, min);
  // HTTP/2 windows: 64 KiB - 1 up to 2^31 - 1 (RFC 9113, 6.9.1).
  const window = (k: string, dflt: number): number => {
    const x = uint(k, dflt, HTTP2_DEFAULT_WINDOW_BYTES);
    if (x > HTTP2_MAX_WINDOW_BYTES) throw new ThinshipError('USAGE', `${file}: "${k}" must be at most ${HTTP2_MAX_WINDOW_BYTES} (HTTP/2's largest window)`);
    return x;
  };
  const maxChunkBytes = uint('maxChunkBytes', DEFAULT_MAX_CHUNK_BYTES, 4096);
  if (maxChunkBytes > 64 * 1024 * 1024) throw new ThinshipError('USAGE', `${file}: "maxChunkBytes" must be at most 64 MiB`);
  const maxActiveTransfers = uint('maxActiveTransfers', DEFAULT_MAX_ACTIVE_TRANSFERS);
  // Room for at least one record (message, decoder copy, zstd output) in each half of the budget.
  const minBuffered = 2 * (3 * maxChunkBytes + 2 * MESSAGE_OVERHEAD_BYTES);
  const maxBufferedBytes = uint('maxBufferedBytes', Math.max(DEFAULT_MAX_BUFFERED_BYTES, minBuffered), minBuffered);
  // Seconds beyond a day would be a misunderstanding (and overflow setTimeout's 2^31 ms).
  const seconds = (k: string, dflt: number, min = 1) => {
    const x = uint(k, dflt, min);
    if (x > 86400) throw new ThinshipError('USAGE', `${file}: "${k}" must be at most 86400 (a day)`);
    return x;
  };
  return {
    file,
    tls: c.tls('tls'),
    stateDir: c.v.stateDir === undefined ? DEFAULT_STATE_DIR : c.path(c.v.stateDir, 'stateDir'),
    checkpointIntervalBytes: uint('checkpointIntervalBytes', DEFAULT_CHECKPOINT_INTERVAL_BYTES),
    transferExpiryMs: uint('transferExpirySeconds', DEFAULT_TRANSFER_EXPIRY_MS / 1000) * 1000,
    maxChunkBytes,
    receiveWindowBytes: window('receiveWindowBytes', DEFAULT_RECEIVE_WINDOW_BYTES),
    connectionWindowBytes: c.v.connectionWindowBytes === undefined ? undefined : window('connectionWindowBytes', 0),
    maxActiveTransfers,
    maxActiveTransfersPerIdentity: uint('maxActiveTransfersPerIdentity', defaultMaxActivePerIdentity(maxActiveTransfers)),
    maxStoredTransfersPerIdentity: uint('maxStoredTransfersPerIdentity', DEFAULT_MAX_STORED_TRANSFERS_PER_IDENTITY),
    maxCompletedTransfersPerIdentity: uint('maxCompletedTransfersPerIdentity', DEFAULT_MAX_COMPLETED_TRANSFERS_PER_IDENTITY),
    maxVolumeBytes: uint('maxVolumeBytes', DEFAULT_MAX_VOLUME_BYTES),
    idleTimeoutMs: seconds('idleTimeoutSeconds', DEFAULT_IDLE_TIMEOUT_MS / 1000) * 1000,
    minBytesPerSecond: uint('minBytesPerSecond', DEFAULT_MIN_BYTES_PER_SECOND, 0),
    progressWindowMs: seconds('progressWindowSeconds', DEFAULT_PROGRESS_WINDOW_MS / 1000) * 1000,
    maxBufferedBytes,
    metricsListen: c.hostPort('metricsListen'),
    requireChecksum: c.bool('requireChecksum', true),
    decodeWorkers: uint('decodeWorkers', defaultWorkerCount(), 0),
    keepSnapshots: keepSnapshotsOf(uint('keepSnapshots', DEFAULT_KEEP_SNAPSHOTS), file),
    policy: await parseAccessRules(c.v.identities ?? {}, file),
  };
}
