/**
 * The gRPC sender: a SendPlan and a volume reader become one ApplyStream call
 * (or several, when it has to resume).
 *
 * Pipeline (the sending core, then this adapter): sender.ts reads ahead →
 * the compression stage (sender/compress-stage.ts: worker threads checksum,
 * detect zeros and compress) → this file maps the prepared messages to
 * ApplyStream requests in stream order, with backpressure; the stream digest
 * and the End's counts come from the integrity core (stream/integrity.ts
 * StreamLedger).
 *
 * Memory in flight is bounded by, at the largest chunk size C (1 MiB by default):
 *   READ_AHEAD_OPS (8) chunks read ahead by sender.ts            8 C
 * + COMPRESS_AHEAD_PER_WORKER (2) chunks per worker (2 workers: 4)  4 C raw + ≤ 4 C frames
 * + MAX_WRITES_IN_FLIGHT (4) messages handed to gRPC and not yet
 *   accepted by HTTP/2 (we wait for their write callbacks, and for
 *   'drain' whenever write() returns false)                       4 C (+ one serialized copy each)
 * + the receiver's HTTP/2 window, in sockets                       8 MiB
 * ≈ 28 C + 8 MiB, about 36 MiB at 1 MiB chunks with 2 workers (+ 4 C per extra worker).
 *
 * Resume: on UNAVAILABLE or a broken stream the sender asks GetTransferState
 * and starts a new call at the durable offset with the digest state and
 * counts the receiver reports. The plan is deterministic, so the records
 * above that offset are the same as before, and the target ends up
 * byte-identical to an uninterrupted transfer.
 */
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ThinshipError, asThinshipError } from '../errors.js';
import { logPhase } from '../log.js';
import { StreamLedger, DEFAULT_CHECKSUM, type RecordChecksum } from '../stream/integrity.js';
import type { BeginInfo, EndMessage } from '../stream/messages.js';
import { sendMessages, READ_AHEAD_OPS } from '../sender/sender.js';
import { CompressPool } from '../sender/compress-pool.js';
import { compressStage, COMPRESS_AHEAD_PER_WORKER, type PreparedData } from '../sender/compress-stage.js';
import { CompressDecision, LinkMeter, type CompressMode } from '../sender/compress-decision.js';
import { ChunkBuffers } from '../sender/chunk-buffers.js';
import { DEFAULT_MAX_OP_BYTES } from '../thin/plan.js';
import type { TokenBucket } from '../stream/bandwidth.js';
import type { VolumeReader } from '../sender/volume-reader.js';
import type { SendPlan } from '../thin/planner.js';
import type { TargetReport } from '../receiver/target-state/report.js';
import {
  newReceiverClient,
  PROTOCOL_VERSION,
  CHECKSUM_PROTO_NAMES,
  unixMsOfTimestamp,
  type GetTargetResponse__Output,
  type ApplyStreamRequest,
  type ApplyStreamResponse__Output,
  type TransferState__Output,
  type AbortTransferResponse__Output,
  type ReceiverServiceClient,
} from './proto.js';
import { fromServiceError, fromReceiver, type TransportFailure } from './status.js';
import { releaseSerialized } from './data-encoder.js';
import {
  checkInsecureAllowed,
  clientCredentialsOf,
  loadClientTls,
  parseHostPort,
  probeConnection,
  clientCertificateProblems,
  type TlsFiles,
  type ClientTls,
  type HostPort,
} from './tls.js';

const MAX_WRITES_IN_FLIGHT = 4;
/** Largest message the client will send: 64 MiB chunk limit plus overhead. */
const MAX_SEND_MESSAGE_BYTES = 65 * 1024 * 1024;

export interface ConnectOptions {
  /** HOST:PORT of the receiver. */
  address: string;
  /** mTLS files (CA that signed the server, our certificate and key). Required unless insecure. */
  tls?: TlsFiles;
  insecure?: boolean;
  allowInsecureRemote?: boolean;
  /** Name to verify the server certificate against, when it differs from HOST. */
  serverName?: string;
}

const UNARY_DEADLINE_MS = 30_000;
/** Our own handshake when grpc-js cannot say why a connection failed. */
const PROBE_TIMEOUT_MS = 3000;
/**
 * The SNI name sent when --to is an IP address and no --server-name is given:
 * TLS has no SNI for an address (RFC 6066; Node warns, DEP0123) and grpc-js
 * always sends one. The certificate is still checked against the address.
 */
const SNI_FOR_IP = 'thinship-receiver';

/** The `state` of a GetTransferState or ApplyStream answer: a receiver always sets it (a missing one is its fault). */
function stateOf(r: { state: TransferState__Output | null } | undefined, rpc: string): TransferState__Output {
  if (!r?.state) throw new ThinshipError('BAD_STREAM', `the receiver answered ${rpc} without a state`);
  return r.state;
}

/** Errors explain() already looked at (a unary call's error passes through the send loop too). */
const explained = new WeakSet<ThinshipError>();

/** A channel's address, credentials and options (mTLS, or plaintext on loopback): what any thinship client connects with. */
export interface ChannelSetup {
  hp: HostPort;
  creds: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
  tls: ClientTls | undefined;
  servername: string | undefined;
  verifyHost: string;
}

/** `flag` names the address option in errors (--to, --via). */
export async function channelOf(o: ConnectOptions, flag: string): Promise<ChannelSetup> {
  const hp = parseHostPort(o.address, flag);
  let creds: grpc.ChannelCredentials;
  let tls: ClientTls | undefined;
  const options: grpc.ChannelOptions = {
    'grpc.max_send_message_length': MAX_SEND_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 20_000,
    // Our own loop retries and resumes; keep grpc-js from replaying a half-sent stream.
    'grpc.enable_retries': 0,
    // While grpc-js backs off, calls fail at once with the old error: keep its back-off
    // well under ours (1-15 s) so each of our retries is a real connection attempt.
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2000,
  };
  const verifyHost = o.serverName ?? hp.host;
  let servername: string | undefined = o.serverName;
  if (o.insecure) {
    checkInsecureAllowed(hp.host, o.allowInsecureRemote, '--allow-insecure-remote');
    creds = grpc.credentials.createInsecure();
  } else {
    if (!o.tls) throw new ThinshipError('USAGE', 'mTLS needs --ca, --cert and --key (or --tls-dir); use --insecure only for a test on loopback');
    tls = await loadClientTls(o.tls);
    if (o.serverName) {
      options['grpc.ssl_target_name_override'] = o.serverName;
      creds = clientCredentialsOf(tls);
    } else if (isIP(hp.host)) {
      options['grpc.ssl_target_name_override'] = SNI_FOR_IP;
      creds = clientCredentialsOf(tls, hp.host);
    } else {
      servername = hp.host;
      creds = clientCredentialsOf(tls);
    }
  }
  return { hp, creds, options, tls, servername, verifyHost };
}

export class ReceiverClient {
  /** True once the receiver answered a call (a result or an error of its own). */
  reached = false;

  private constructor(
    readonly address: string,
    private readonly raw: ReceiverServiceClient,
    /** The identity we present: the client certificate's CN, or "anonymous" without TLS. */
    readonly identity: string,
    private readonly hp: HostPort,
    private readonly tls: ClientTls | undefined,
    private readonly servername: string | undefined,
    private readonly verifyHost: string,
  ) {}

  static async connect(o: ConnectOptions): Promise<ReceiverClient> {
    const { hp, creds, options, tls, servername, verifyHost } = await channelOf(o, '--to');
    const raw = newReceiverClient(o.address, creds, options);
    return new ReceiverClient(o.address, raw, tls?.commonName ?? 'anonymous', hp, tls, servername, verifyHost);
  }

  /**
   * The exact reason for a transport failure (details.transport, see
   * rpc/status.ts): grpc-js's words when they say it, else one TCP + TLS
   * handshake of our own. A refused client certificate or an untrusted
   * receiver is UNAUTHENTICATED (not retried); nobody at the address has
   * details.connect = true; a connection dropped during the handshake is
   * probed too (a receiver refusing our certificate can reset the call's
   * connection before its TLS alert is read: the probe, which sends nothing
   * after its handshake, reads the alert), and stays a retryable UNAVAILABLE
   * when the probe is dropped as well (a receiver restarting).
   */
  async explain(err: ThinshipError): Promise<ThinshipError> {
    const t = err.details.transport as TransportFailure | undefined;
    if (!t || t.kind === 'server-certificate' || explained.has(err)) return err;
    const x = await this.classify(err, t);
    explained.add(x);
    return x;
  }

  private async classify(err: ThinshipError, t: TransportFailure): Promise<ThinshipError> {
    const unavailable = (why: string, connect: boolean) =>
      new ThinshipError('UNAVAILABLE', why, { retryable: true, details: { ...err.details, connect }, cause: err });
    if (t.kind === 'connect') return unavailable(`cannot connect to the receiver at ${this.address}: ${t.reason}`, true);
    const p = await probeConnection({
      host: this.hp.host,
      port: this.hp.port,
      tls: this.tls,
      servername: this.servername,
      verifyHost: this.verifyHost,
      timeoutMs: PROBE_TIMEOUT_MS,
    });
    const who = this.tls ? `our client certificate "${this.identity}" (${this.tls.files.cert})` : 'us';
    const refused = (why: string) =>
      new ThinshipError('UNAUTHENTICATED', `the receiver at ${this.address} refused ${who}: ${why}`, { details: { ...err.details, probe: p }, cause: err });
    switch (p.kind) {
      case 'connect':
        return unavailable(`cannot connect to the receiver at ${this.address}: ${p.reason}`, true);
      case 'server-certificate':
        return new ThinshipError('UNAUTHENTICATED', `the receiver's certificate at ${this.address} is not trusted: ${p.reason}`, {
          details: { ...err.details, probe: p },
          cause: err,
        });
      case 'alert':
        return refused(`${p.description}${p.alert === undefined ? '' : ` (TLS alert ${p.alert})`}`);
      case 'closed-after-handshake': {
        const problems = this.tls ? clientCertificateProblems(this.tls) : [];
        return refused(
          `it closed the connection right after the TLS handshake, without a TLS alert; ${problems.length > 0 ? problems.join('; ') : "the certificate looks valid here: is its CA in the receiver's tls.ca?"}`,
        );
      }
      case 'dropped':
        return unavailable(`the receiver at ${this.address} closed the connection before the TLS handshake completed (restarting?): ${p.reason}`, false);
      default:
        return err; // it answers now: the failure was passing, retry
    }
  }

  private settle<T>(e: grpc.ServiceError | null, where: string, ok: () => T, resolve: (v: T) => void, reject: (e: unknown) => void): void {
    if (!e || fromReceiver(e)) this.reached = true;
    if (!e) {
      try {
        resolve(ok());
      } catch (x) {
        reject(x);
      }
      return;
    }
    this.explain(fromServiceError(e, where)).then(reject, reject);
  }

  /** The receiver's durable state of a transfer, or undefined if it has none (NOT_FOUND). */
  getTransferState(transferId: string): Promise<TransferState__Output | undefined> {
    return new Promise((resolve, reject) => {
      this.raw.GetTransferState({ transferId }, new grpc.Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (e, r) => {
        if (e?.code === grpc.status.NOT_FOUND) {
          this.reached = true;
          resolve(undefined);
          return;
        }
        this.settle(e, `GetTransferState on ${this.address}`, () => stateOf(r, 'GetTransferState'), resolve, reject);
      });
    });
  }

  /** GetTarget: what a target on the receiver holds, as a target report (receiver/target-state/report.ts; staged applies without their paths). */
  getTarget(target: string): Promise<TargetReport> {
    return new Promise((resolve, reject) => {
      this.raw.GetTarget({ target }, new grpc.Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (e, r) => {
        this.settle(e, `GetTarget on ${this.address}`, () => reportOfProto(r!), resolve, reject);
      });
    });
  }

  /** The caller's transfers on the receiver, newest first. */
  listTransfers(): Promise<TransferState__Output[]> {
    return new Promise((resolve, reject) => {
      this.raw.ListTransfers({}, new grpc.Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (e, r) => {
        this.settle(e, `ListTransfers on ${this.address}`, () => r?.transfers ?? [], resolve, reject);
      });
    });
  }

  abortTransfer(transferId: string, reason = ''): Promise<AbortTransferResponse__Output> {
    return new Promise((resolve, reject) => {
      this.raw.AbortTransfer({ transferId, reason }, new grpc.Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (e, r) => {
        this.settle(e, `AbortTransfer on ${this.address}`, () => r!, resolve, reject);
      });
    });
  }

  /** Opens an ApplyStream call; `response` settles with the receiver's answer or error. */
  applyStream(): { call: grpc.ClientWritableStream<ApplyStreamRequest>; response: Promise<ApplyStreamResponse__Output> } {
    let call!: grpc.ClientWritableStream<ApplyStreamRequest>;
    const response = new Promise<ApplyStreamResponse__Output>((resolve, reject) => {
      call = this.raw.ApplyStream(new grpc.Metadata(), {}, (e, r) => {
        if (!e || fromReceiver(e)) this.reached = true;
        if (e) reject(e);
        else resolve(r!);
      });
    });
    response.catch(() => undefined);
    call.on('error', () => undefined); // surfaced through `response`
    return { call, response };
  }

  /**
   * Starts the TCP + TLS handshake now instead of at the first call
   * (grpc-js connects lazily), so it overlaps with planning.
   */
  startConnecting(): void {
    this.raw.getChannel().getConnectivityState(true);
  }

  close(): void {
    this.raw.close();
  }
}

export interface SendProgress {
  /** Uncompressed DATA bytes handed to gRPC in this run (all attempts). */
  dataBytes: number;
  /** Payload bytes on the wire (compressed, zero chunks count 0). */
  payloadBytes: number;
  /** Volume offset reached. */
  offsetBytes: number;
  plannedDataBytes: number;
  /** DATA bytes below the resume offset that an earlier run already delivered. */
  resumedDataBytes: number;
}

export type SendEvent =
  | { type: 'start'; transferId: string; resumeOffsetBytes: number; attempt: number }
  | { type: 'retry'; attempt: number; error: ThinshipError; delayMs: number }
  /** The receiver refused the default checksum (it is older than it): the transfer starts again with `using`. */
  | { type: 'checksum-fallback'; refused: RecordChecksum; using: RecordChecksum; error: ThinshipError };

export interface GrpcSendOptions {
  /** Begin.force / Begin.grow: the receiver applies over a diverged target / extends a smaller file target. */
  force?: boolean;
  grow?: boolean;
  target: string;
  /** Default: derived from the target and the plan (defaultTransferId), so a re-run resumes. */
  transferId?: string;
  /**
   * zstd on worker threads: 'zstd' every chunk (default; also `true`), 'none'
   * RAW and ZERO only (also `false`), 'auto' per chunk while it pays
   * (sender/compress-decision.ts; what `send --to` and the sender daemon use).
   */
  compress?: CompressMode | boolean;
  /**
   * The per-DATA checksum of a new transfer. A resumed one keeps the
   * algorithm it began with (TransferState.checksum). Default:
   * DEFAULT_CHECKSUM (BLAKE3), and sha256 for a receiver that refuses it (one
   * older than BLAKE3); given explicitly, such a refusal fails the send.
   */
  checksum?: RecordChecksum;
  /** zstd level of the pool made here (default 1); a given `pool` has its own. */
  zstdLevel?: number;
  /** Worker threads of the pool made here (default: one per core, compress-pool.ts). */
  workers?: number;
  /**
   * A compression pool started earlier by the caller (its workers boot while
   * the plan is made); its level is used, `compress` decides per chunk. The caller closes it.
   * Default: a pool of `workers` made and closed here.
   */
  pool?: CompressPool;
  /**
   * Calls to try in a row without progress, including the first (default 10).
   * An attempt that delivered data starts the count (and the delay) afresh.
   */
  maxAttempts?: number;
  /** First retry delay; doubles up to 15 s (default 1000 ms). */
  retryDelayMs?: number;
  /**
   * How long to keep trying when nothing answers at the address before the
   * receiver ever answered (default 5000 ms): a wrong address or a receiver
   * that is not running should not take the resume retries' minute and a half.
   */
  connectWaitMs?: number;
  signal?: AbortSignal;
  /** A bandwidth limit: each DATA payload waits for its bytes before it goes to gRPC. */
  bandwidth?: TokenBucket;
  onProgress?: (p: SendProgress) => void;
  onEvent?: (e: SendEvent) => void;
}

export interface GrpcSendResult {
  transferId: string;
  /** The per-DATA checksum of the transfer (of the last call). */
  checksum: RecordChecksum;
  /** The receiver already had this transfer complete: nothing was sent. */
  alreadyComplete: boolean;
  attempts: number;
  /** Where each call started. */
  startOffsets: number[];
  dataBytes: number;
  payloadBytes: number;
  unmapBytes: number;
  chunks: { raw: number; zstd: number; zero: number };
  plannedDataBytes: number;
  digest: Buffer;
  state: TransferState__Output;
  response?: ApplyStreamResponse__Output;
  seconds: number;
}

/**
 * The source and base ids as the receiver sees them (Begin.sourceId/baseId):
 * LV uuids, or for an offline pool "<real path of the metadata>#<dev id>", so
 * that a relative path, an absolute one or a symlink name the same volume.
 */
export function wireVolumeIds(p: SendPlan): { sourceId: string; baseId: string } {
  if (p.spec.kind !== 'offline') return { sourceId: p.source.uuid, baseId: p.base?.uuid ?? '' };
  const meta = realPath(p.spec.metadataPath);
  return { sourceId: `${meta}#${p.spec.snapDevId}`, baseId: p.spec.baseDevId === undefined ? '' : `${meta}#${p.spec.baseDevId}` };
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  } // the planner already read it; a vanished file fails there
}

/**
 * The default transfer id: a hash of who sends (the client identity: two
 * senders of one snapshot to a shared target must not share a transfer), the
 * target and what is sent, so that running the same send again after a crash
 * resumes the same transfer. Offline pool paths count by their real path.
 */
export function defaultTransferId(p: SendPlan, target: string, identity: string): string {
  const t = p.plan.totals;
  const ids = wireVolumeIds(p);
  const dataPath = p.spec.kind === 'offline' ? realPath(p.spec.dataPath) : '';
  const h = createHash('sha256').update(
    JSON.stringify([identity, target, ids.sourceId, ids.baseId, dataPath, p.mode, t.volumeSizeBytes, t.dataBytes, t.unmapBytes, t.dataOps, t.unmapOps]),
  );
  return `ts-${h.digest('hex').slice(0, 32)}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ThinshipError('ABORTED', 'send cancelled'));
      return;
    }
    // The listener goes with the wait: one per retry would pile up on a long-lived signal.
    const onAbort = () => {
      clearTimeout(t);
      reject(new ThinshipError('ABORTED', 'send cancelled'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function retryable(e: ThinshipError): boolean {
  return e.retryable || e.code === 'RESUME_MISMATCH';
}

/**
 * True when the receiver refused the Begin's checksum algorithm as one it
 * does not know: what receivers older than BLAKE3 answer a BLAKE3 Begin
 * ("begin: checksum 3 is not one of CHECKSUM_ALGORITHM_NONE,
 * CHECKSUM_ALGORITHM_SHA256", BAD_STREAM; protobufjs hands them the number of
 * an enum value they do not know). Nothing was applied then.
 */
export function refusedChecksumAlgorithm(e: ThinshipError): boolean {
  return e.code === 'BAD_STREAM' && /begin: checksum \S+ is not one of /.test(e.message);
}

/** The algorithm a resumed transfer began with: TransferState.checksum, or sha256 from receivers that do not say (they know no other). */
function checksumOfState(st: TransferState__Output): RecordChecksum {
  return st.checksum === CHECKSUM_PROTO_NAMES.blake3 ? 'blake3' : 'sha256';
}

/** The Begin request of a call: the sender's begin, and what only this call knows. */
function pbBeginOf(
  info: BeginInfo,
  call: { target: string; resumeOffsetBytes: number; compress: boolean; force?: boolean; grow?: boolean },
): ApplyStreamRequest {
  return {
    kind: 'begin',
    begin: {
      protocolVersion: PROTOCOL_VERSION,
      transferId: info.transferId ?? '',
      target: call.target,
      mode: info.incremental ? 'TRANSFER_MODE_INCREMENTAL' : 'TRANSFER_MODE_FULL',
      volumeSizeBytes: info.volumeSizeBytes ?? 0,
      blockSizeBytes: info.blockSizeBytes ?? 0,
      sourceId: info.sourceId ?? '',
      sourceName: info.sourceName ?? '',
      baseId: info.baseId ?? '',
      plannedDataBytes: info.plannedDataBytes ?? 0,
      plannedUnmapBytes: info.plannedUnmapBytes ?? 0,
      resumeOffsetBytes: call.resumeOffsetBytes,
      compression: call.compress ? 'COMPRESSION_ZSTD' : 'COMPRESSION_NONE',
      checksum: CHECKSUM_PROTO_NAMES[info.checksum ?? 'none'],
      force: call.force === true,
      grow: call.grow === true,
    },
  };
}

/** The End request: the ledger's end; `records` counts begin and end too (the proto's field). */
function pbEndOf(end: EndMessage): ApplyStreamRequest {
  return {
    kind: 'end',
    end: {
      records: end.dataRecords + end.unmapRecords + 2,
      dataRecords: end.dataRecords,
      unmapRecords: end.unmapRecords,
      dataBytes: end.dataBytes ?? 0,
      unmapBytes: end.unmapBytes ?? 0,
      digest: end.digest ?? Buffer.alloc(0),
    },
  };
}

export async function sendPlanOverGrpc(client: ReceiverClient, p: SendPlan, reader: VolumeReader, o: GrpcSendOptions): Promise<GrpcSendResult> {
  const t0 = performance.now();
  const transferId = o.transferId ?? defaultTransferId(p, o.target, client.identity);
  const maxAttempts = Math.max(1, o.maxAttempts ?? 10);
  const firstDelayMs = o.retryDelayMs ?? 1000;
  let delay = firstDelayMs;
  const mode: CompressMode = o.compress === undefined || o.compress === true ? 'zstd' : o.compress === false ? 'none' : o.compress;
  const compress = mode !== 'none';
  const totals = p.plan.totals;
  /** The algorithm of a new transfer; sha256 from the first refusal of an older receiver on (when not chosen explicitly). */
  let newChecksum: RecordChecksum = o.checksum ?? DEFAULT_CHECKSUM;
  const r: Omit<GrpcSendResult, 'digest' | 'state' | 'seconds'> = {
    transferId,
    checksum: newChecksum,
    alreadyComplete: false,
    attempts: 0,
    startOffsets: [],
    dataBytes: 0,
    payloadBytes: 0,
    unmapBytes: 0,
    chunks: { raw: 0, zstd: 0, zero: 0 },
    plannedDataBytes: totals.dataBytes,
  };
  const pool = o.pool ?? new CompressPool({ workers: o.workers, compress, zstdLevel: o.zstdLevel });
  // Kept across attempts: what was measured of the link and the workers stays true after a reconnect.
  const decision = new CompressDecision(mode, pool.size);
  let mismatches = 0;
  /** Failed attempts since the last one that delivered data. */
  let failures = 0;
  let connectDeadline: number | undefined;
  let connectDelayMs = Math.min(firstDelayMs, 250);
  let resumable = false;
  try {
    for (let attempt = 1; ; attempt++) {
      r.attempts = attempt;
      const dataBefore = r.dataBytes;
      try {
        const st = await client.getTransferState(transferId);
        logPhase('send: transfer state received', { attempt });
        if (st?.status === 'TRANSFER_STATUS_COMPLETE') {
          // Complete before we sent anything: a re-run. After a broken call: our End got through.
          r.alreadyComplete = r.startOffsets.length === 0;
          return { ...r, digest: st.digestState, state: st, seconds: (performance.now() - t0) / 1000 };
        }
        if (st) resumable = true;
        const resume = st?.durableOffsetBytes ?? 0;
        r.checksum = st ? checksumOfState(st) : newChecksum;
        r.startOffsets.push(resume);
        o.onEvent?.({ type: 'start', transferId, resumeOffsetBytes: resume, attempt });
        const res = await oneCall(client, p, reader, pool, o, r, transferId, decision, r.checksum, st);
        return { ...r, digest: res.digest, state: stateOf(res, 'ApplyStream'), response: res, seconds: (performance.now() - t0) / 1000 };
      } catch (e) {
        const err = await client.explain(fromServiceError(e, `ApplyStream to ${client.address}`));
        if (o.signal?.aborted) throw err;
        if (r.dataBytes > dataBefore) {
          resumable = true;
          failures = 0;
          delay = firstDelayMs;
        } // progress: a fresh start
        if (refusedChecksumAlgorithm(err) && r.checksum !== 'sha256') {
          if (o.checksum === undefined) {
            // A receiver older than BLAKE3: this transfer (nothing of it was applied) goes as sha256.
            newChecksum = 'sha256';
            o.onEvent?.({ type: 'checksum-fallback', refused: r.checksum, using: newChecksum, error: err });
            // The refused call is no attempt of the transfer: nothing was applied.
            r.startOffsets.pop();
            attempt--;
            continue;
          }
          throw new ThinshipError(err.code, `${err.message} (the receiver is older than checksum ${r.checksum}: upgrade it, or send with --checksum sha256)`, {
            details: err.details,
            cause: err,
          });
        }
        if (!client.reached && err.details.connect === true) {
          // Nobody at the address yet: a short, bounded wait, then say so (nothing was started).
          connectDeadline ??= Date.now() + (o.connectWaitMs ?? 5000);
          const leftMs = connectDeadline - Date.now();
          if (leftMs <= 0) {
            throw new ThinshipError('UNAVAILABLE', `${err.message} (tried for ${((o.connectWaitMs ?? 5000) / 1000).toFixed(0)} s; nothing was sent)`, {
              details: err.details,
              cause: err,
            });
          }
          const waitMs = Math.min(connectDelayMs, leftMs);
          o.onEvent?.({ type: 'retry', attempt, error: err, delayMs: waitMs });
          await sleep(waitMs, o.signal);
          connectDelayMs = Math.min(connectDelayMs * 2, 2000);
          continue;
        }
        failures++;
        // A resume mismatch clears up after one fresh GetTransferState (e.g. a takeover moved the
        // durable offset); twice in a row means the transfer id is taken by something else.
        mismatches = err.code === 'RESUME_MISMATCH' ? mismatches + 1 : 0;
        if (!retryable(err) || mismatches > 2 || failures >= maxAttempts) {
          if (failures >= maxAttempts && retryable(err)) {
            const next = resumable
              ? `run the same send again to resume transfer ${transferId}`
              : 'no data reached the receiver; run the same send again to retry';
            throw new ThinshipError(err.code, `${err.message} (gave up after ${failures} attempts in a row; ${next})`, {
              retryable: true,
              details: err.details,
              cause: err,
            });
          }
          throw err;
        }
        o.onEvent?.({ type: 'retry', attempt, error: err, delayMs: delay });
        await sleep(delay, o.signal);
        delay = Math.min(delay * 2, 15_000);
      }
    }
  } finally {
    if (!o.pool) await pool.close();
  }
}

/** One ApplyStream call from the receiver's durable state `st` (undefined: from the start). */
async function oneCall(
  client: ReceiverClient,
  p: SendPlan,
  reader: VolumeReader,
  pool: CompressPool,
  o: GrpcSendOptions,
  r: Omit<GrpcSendResult, 'digest' | 'state' | 'seconds'>,
  transferId: string,
  decision: CompressDecision,
  checksum: RecordChecksum,
  st: TransferState__Output | undefined,
): Promise<ApplyStreamResponse__Output> {
  const resume = st?.durableOffsetBytes ?? 0;
  // Everything below the resume offset is in the receiver's state: the ledger continues from it.
  const ledger = new StreamLedger(
    true,
    st && { digest: st.digestState, dataRecords: st.dataRecords, unmapRecords: st.unmapRecords, dataBytes: st.dataBytes, unmapBytes: st.unmapBytes },
  );
  const resumedDataBytes = ledger.counts.dataBytes;
  const totals = p.plan.totals;
  const { call, response } = client.applyStream();
  let failure: unknown;
  // Waits end early when the call fails. Each wait registers itself and is removed when it
  // ends: racing every wait against one long-lived promise would keep them all alive (the
  // receiver's leak of issue 5 was this pattern).
  const failWaiters = new Set<() => void>();
  response.catch((e: unknown) => {
    failure = e;
    for (const w of [...failWaiters]) w();
  });
  const waitUntil = (register: (done: () => void) => () => void) =>
    new Promise<void>((resolve) => {
      if (failure !== undefined) {
        resolve();
        return;
      }
      let unregister: () => void = () => undefined;
      const done = () => {
        failWaiters.delete(done);
        unregister();
        resolve();
      };
      failWaiters.add(done);
      unregister = register(done);
    });
  let inflight = 0;
  let wake: (() => void) | undefined;
  // failure is the call's own error (a grpc ServiceError): it stays raw, the retry loop classifies it.
  const check = () => {
    if (failure !== undefined) throw failure as Error;
    if (o.signal?.aborted) throw new ThinshipError('ABORTED', 'send cancelled');
  };
  // A cancel ends the call at once, wherever this function waits (its failure wakes every wait).
  const onAbort = () => call.cancel();
  o.signal?.addEventListener('abort', onAbort, { once: true });

  // The link's capacity for --compress auto: wire bytes per second of having writes pending.
  const link = new LinkMeter((bytes, seconds) => decision.noteLink(bytes, seconds));
  /** `written` runs when grpc-js is done with the message (it has serialized it). */
  const write = async (req: ApplyStreamRequest, written?: () => void) => {
    check();
    inflight++;
    link.start();
    const ok = call.write(req, () => {
      releaseSerialized(req); // grpc-js framed its own copy of the message (channelOf disables retries)
      inflight--;
      link.done(req.data?.payload?.length ?? 0);
      written?.();
      wake?.();
    });
    if (!ok)
      await waitUntil((done) => {
        call.once('drain', done);
        return () => call.off('drain', done);
      });
    while (inflight >= MAX_WRITES_IN_FLIGHT && failure === undefined) {
      await waitUntil((done) => {
        wake = done;
        return () => {
          if (wake === done) wake = undefined;
        };
      });
    }
    check();
  };

  // Enough for every chunk in flight (read ahead, in the workers, handed to gRPC) at the default op size.
  const buffers = new ChunkBuffers((READ_AHEAD_OPS + COMPRESS_AHEAD_PER_WORKER * pool.size + MAX_WRITES_IN_FLIGHT + 2) * DEFAULT_MAX_OP_BYTES);
  const emit = async (it: PreparedData | { type: 'unmap'; offsetBytes: number; lengthBytes: number }) => {
    if (it.type === 'unmap') {
      ledger.addUnmap(it.offsetBytes, it.lengthBytes);
      r.unmapBytes += it.lengthBytes;
      await write({ kind: 'unmap', unmap: { offsetBytes: it.offsetBytes, lengthBytes: it.lengthBytes } });
    } else {
      const c = it.result;
      ledger.addData(it.offsetBytes, it.lengthBytes, c.checksum);
      const [encoding, payload] = c.zero
        ? ['ENCODING_ZERO' as const, Buffer.alloc(0)]
        : c.frame
          ? ['ENCODING_ZSTD' as const, c.frame]
          : ['ENCODING_RAW' as const, c.raw];
      if (o.bandwidth) await o.bandwidth.take(payload.length + 64, o.signal).catch(() => check());
      r.chunks[c.zero ? 'zero' : c.frame ? 'zstd' : 'raw']++;
      // The read buffer goes back for reuse once nothing reads it: now, unless it is the
      // payload itself, which a gRPC write serializes later (then: after its callback).
      // A zstd frame goes back to the pool the same way (after its message's write callback).
      const sendsRaw = payload === c.raw;
      if (!sendsRaw) buffers.give(c.raw);
      const frame = c.frame;
      await write(
        { kind: 'data', data: { offsetBytes: it.offsetBytes, lengthBytes: it.lengthBytes, payload, encoding, checksum: c.checksum } },
        sendsRaw ? () => buffers.give(c.raw) : frame ? () => pool.giveFrame(frame) : undefined,
      );
      r.dataBytes += it.lengthBytes;
      r.payloadBytes += payload.length;
    }
    o.onProgress?.({
      dataBytes: r.dataBytes,
      payloadBytes: r.payloadBytes,
      offsetBytes: it.offsetBytes + it.lengthBytes,
      plannedDataBytes: totals.dataBytes,
      resumedDataBytes,
    });
  };

  try {
    const messages = sendMessages(p, reader, { resumeFromBytes: resume, transferId, buffers, checksum, volumeIds: wireVolumeIds(p) });
    for await (const m of compressStage(messages, pool, decision)) {
      if (m.type === 'begin')
        await write(
          pbBeginOf(m.info, {
            target: o.target,
            resumeOffsetBytes: resume,
            compress: decision.mode !== 'none',
            force: o.force === true,
            grow: o.grow === true,
          }),
        );
      else if (m.type === 'end')
        continue; // the ledger's end, below (it counts what an earlier call delivered too)
      else await emit(m);
    }
    await write(pbEndOf(ledger.seal()));
    call.end();
    logPhase('send: end written');
    const res = await response;
    if (!ledger.digestMatches(res.digest)) {
      throw new ThinshipError(
        'CHECKSUM_MISMATCH',
        `the receiver reports stream digest ${res.digest.toString('hex')}, the sender computed ${ledger.digest.toString('hex')}`,
      );
    }
    return res;
  } catch (e) {
    call.cancel();
    // The receiver's own error explains more than "cancelled" or a failed write.
    throw (failure as Error | undefined) ?? asThinshipError(e);
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

const STAGED_KINDS = ['staging', 'undo-journal', 'staging-lv', 'commit-journal'] as const;

/** GetTargetResponse as the report `thinship target show` prints. */
function reportOfProto(r: GetTargetResponse__Output): TargetReport {
  const rec = r.record;
  return {
    target: r.target,
    kind: r.kind === 'block-device' || r.kind === 'lvm' ? r.kind : 'file',
    record: rec
      ? {
          record: {
            format: 1,
            sourceId: rec.sourceId,
            baseId: rec.baseId,
            ...(rec.snapshotName ? { snapshotName: rec.snapshotName } : {}),
            volumeSizeBytes: rec.volumeSizeBytes,
            digest: Buffer.from(rec.digest).toString('hex'),
            transferId: rec.transferId,
            receivedUnixMs: unixMsOfTimestamp(rec.receiveTime),
          },
          store: r.recordStore === 'xattr' || r.recordStore === 'sidecar' || r.recordStore === 'lv-tags' ? r.recordStore : 'state-dir',
        }
      : null,
    ...(r.identity ? { identity: r.identity } : {}),
    diverged: r.diverged,
    divergence: r.divergence,
    ...(r.divergenceUnchecked ? { divergenceUnchecked: r.divergenceUnchecked } : {}),
    staged: r.staged.map((s) => ({ file: '', kind: STAGED_KINDS.find((k) => k === s.kind) ?? 'undo-journal' })),
    ...(r.kind === 'lvm' ? { keptSnapshots: r.keptSnapshots, ...(r.lastSnapshot ? { lastSnapshot: r.lastSnapshot } : {}) } : {}),
  };
}
