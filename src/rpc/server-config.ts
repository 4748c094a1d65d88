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
 *     "identities": {
 *       "backup-sender": {
 *         "lvm": [{ "vg": "vg0", "pool": "pool0", "lv": "backup-*" }],
 *         "directories": ["/srv/images"],
 *         "devices": ["/dev/loop7"]
 *       }
 *     }
 *   }
 *
 * An identity is a client certificate's subject CN or any of its SAN values;
 * with --insecure every client is "anonymous".
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ThinshipError } from '../errors.js';
import { parseAccessRules, type AccessPolicy } from '../receiver/access.js';
import type { TlsFiles } from './tls.js';
import {
  DEFAULT_CHECKPOINT_INTERVAL_BYTES, DEFAULT_MAX_CHUNK_BYTES, DEFAULT_TRANSFER_EXPIRY_MS, DEFAULT_MAX_ACTIVE_TRANSFERS, DEFAULT_MAX_STORED_TRANSFERS_PER_IDENTITY, DEFAULT_MAX_COMPLETED_TRANSFERS_PER_IDENTITY,
  DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MIN_BYTES_PER_SECOND, DEFAULT_PROGRESS_WINDOW_MS, defaultMaxActivePerIdentity, DEFAULT_MAX_BUFFERED_BYTES, MESSAGE_OVERHEAD_BYTES,
} from '../receiver/transfers.js';
import { DEFAULT_MAX_VOLUME_BYTES } from '../receiver/record-checks.js';
import { DEFAULT_STATE_DIR } from '../receiver/target-state/device-stage.js';
import { DEFAULT_RECEIVE_WINDOW_BYTES, HTTP2_DEFAULT_WINDOW_BYTES, HTTP2_MAX_WINDOW_BYTES } from './http2-window.js';
import { defaultWorkerCount } from '../stream/worker-pool.js';

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
  policy: AccessPolicy;
}

const KEYS = ['tls', 'stateDir', 'checkpointIntervalBytes', 'transferExpirySeconds', 'maxChunkBytes', 'receiveWindowBytes', 'connectionWindowBytes', 'maxActiveTransfers', 'maxActiveTransfersPerIdentity', 'maxStoredTransfersPerIdentity', 'maxCompletedTransfersPerIdentity',
  'maxVolumeBytes', 'idleTimeoutSeconds', 'minBytesPerSecond', 'progressWindowSeconds', 'maxBufferedBytes', 'requireChecksum', 'decodeWorkers', 'metricsListen', 'identities'];

export async function loadReceiverConfig(file: string): Promise<ReceiverConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ThinshipError('USAGE', `cannot read the receiver config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ThinshipError('USAGE', `receiver config ${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseReceiverConfig(v, file);
}

export async function parseReceiverConfig(v: Record<string, unknown>, file: string): Promise<ReceiverConfig> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ThinshipError('USAGE', `${file}: the config must be a JSON object`);
  for (const k of Object.keys(v)) if (!KEYS.includes(k)) throw new ThinshipError('USAGE', `${file}: unknown key "${k}" (known: ${KEYS.join(', ')})`);
  const base = dirname(resolve(file));
  const path = (p: unknown, what: string): string => {
    if (typeof p !== 'string' || p === '') throw new ThinshipError('USAGE', `${file}: ${what} must be a path`);
    return isAbsolute(p) ? p : resolve(base, p);
  };
  const uint = (k: string, dflt: number, min = 1): number => {
    const x = v[k];
    if (x === undefined) return dflt;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) throw new ThinshipError('USAGE', `${file}: "${k}" must be an integer >= ${min}`);
    return x;
  };
  // HTTP/2 windows: 64 KiB - 1 up to 2^31 - 1 (RFC 9113, 6.9.1).
  const window = (k: string, dflt: number): number => {
    const x = uint(k, dflt, HTTP2_DEFAULT_WINDOW_BYTES);
    if (x > HTTP2_MAX_WINDOW_BYTES) throw new ThinshipError('USAGE', `${file}: "${k}" must be at most ${HTTP2_MAX_WINDOW_BYTES} (HTTP/2's largest window)`);
    return x;
  };
  let tls: TlsFiles | undefined;
  if (v.tls !== undefined) {
    const t = v.tls as Record<string, unknown>;
    if (t === null || typeof t !== 'object') throw new ThinshipError('USAGE', `${file}: "tls" must be an object with ca, cert and key`);
    tls = { ca: path(t.ca, 'tls.ca'), cert: path(t.cert, 'tls.cert'), key: path(t.key, 'tls.key') };
  }
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
  if (v.metricsListen !== undefined && (typeof v.metricsListen !== 'string' || !/^(\[[^\]]+\]|[^:[\]]+):\d+$/.test(v.metricsListen))) throw new ThinshipError('USAGE', `${file}: "metricsListen" must be HOST:PORT`);
  if (v.requireChecksum !== undefined && typeof v.requireChecksum !== 'boolean') throw new ThinshipError('USAGE', `${file}: "requireChecksum" must be true or false`);
  return {
    file,
    tls,
    stateDir: v.stateDir === undefined ? DEFAULT_STATE_DIR : path(v.stateDir, 'stateDir'),
    checkpointIntervalBytes: uint('checkpointIntervalBytes', DEFAULT_CHECKPOINT_INTERVAL_BYTES),
    transferExpiryMs: uint('transferExpirySeconds', DEFAULT_TRANSFER_EXPIRY_MS / 1000) * 1000,
    maxChunkBytes,
    receiveWindowBytes: window('receiveWindowBytes', DEFAULT_RECEIVE_WINDOW_BYTES),
    connectionWindowBytes: v.connectionWindowBytes === undefined ? undefined : window('connectionWindowBytes', 0),
    maxActiveTransfers,
    maxActiveTransfersPerIdentity: uint('maxActiveTransfersPerIdentity', defaultMaxActivePerIdentity(maxActiveTransfers)),
    maxStoredTransfersPerIdentity: uint('maxStoredTransfersPerIdentity', DEFAULT_MAX_STORED_TRANSFERS_PER_IDENTITY),
    maxCompletedTransfersPerIdentity: uint('maxCompletedTransfersPerIdentity', DEFAULT_MAX_COMPLETED_TRANSFERS_PER_IDENTITY),
    maxVolumeBytes: uint('maxVolumeBytes', DEFAULT_MAX_VOLUME_BYTES),
    idleTimeoutMs: seconds('idleTimeoutSeconds', DEFAULT_IDLE_TIMEOUT_MS / 1000) * 1000,
    minBytesPerSecond: uint('minBytesPerSecond', DEFAULT_MIN_BYTES_PER_SECOND, 0),
    progressWindowMs: seconds('progressWindowSeconds', DEFAULT_PROGRESS_WINDOW_MS / 1000) * 1000,
    maxBufferedBytes,
    metricsListen: v.metricsListen,
    requireChecksum: v.requireChecksum === undefined ? true : v.requireChecksum,
    decodeWorkers: uint('decodeWorkers', defaultWorkerCount(), 0),
    policy: await parseAccessRules(v.identities ?? {}, file),
  };
}
