/**
 * The gRPC receiver: thinship.v1.ReceiverService (ApplyStream, GetTransferState,
 * AbortTransfer) over mTLS, plus grpc.health.v1.Health and server
 * reflection. This file only adapts: protobuf messages become the
 * TransferBegin (the transport-neutral BeginInfo and the call's terms) and
 * WireRecord values of receiver/record-checks.ts, which
 * validates and applies them, and errors become gRPC statuses (status.ts).
 *
 * Memory: all running transfers together hold at most maxBufferedBytes
 * (default 256 MiB) of messages: half is a shared budget for records received
 * and not yet written (transfers.ts reserves each record's worst case before
 * it lets gRPC read the message; grpc-js queues none ahead), half is split
 * among running transfers as each connection's HTTP/2 stream window (what a
 * paused transfer holds: http2-window.ts) and connection window, each less
 * one message, shrinking as more transfers run. The decode pool keeps up to
 * 16 MiB more of spare output buffers (decode-pool.ts). Measured: 16 transfers of
 * 4 MiB chunks, serve's peak RSS under 512 MiB, issue 11's target
 * (test/service/receiver-limits.test.ts; bench/receiver-memory.ts; figures
 * in README.md).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from 'pino';
import type { ServerHttp2Session } from 'node:http2';
import { ThinshipError } from '../errors.js';
import { log as rootLog } from '../log.js';
import { TransferRegistry, MESSAGE_OVERHEAD_BYTES, type TransferStateView } from '../receiver/transfers.js';
import type { TargetReport } from '../receiver/target-state/report.js';
import type { TransferBegin, WireRecord } from '../receiver/record-checks.js';
import type { ClientIdentity } from '../receiver/access.js';
import {
  receiverProto,
  protoRoot,
  LOADER_OPTIONS,
  PROTOCOL_VERSION,
  CHECKSUM_PROTO_NAMES,
  RECEIVER_SERVICE,
  timestampOfUnixMs,
  type ApplyStreamResponse,
  type Begin__Output,
  type TransferState,
  type ReceiverServiceHandlers,
  type GetTargetResponse,
} from './proto.js';
import { toServiceError } from './status.js';
import { applyRequestDeserializer, isMalformed, type DecodedApplyRequest } from './apply-request-decode.js';
import { access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { createReceiverMetrics, tlsRefusalReason, type ReceiverMetrics } from '../ops/metrics.js';
import { startOpsListener, type OpsListener } from '../ops/ops-listener.js';
import { configReloader } from '../ops/config-reload.js';
import { callerIdentity, listenCredentials, loadServerTls, parseHostPort, type AuthContextLike } from './tls.js';
import { raiseReceiveWindow, observeHttp2Servers, ConnectionWindowControl } from './http2-window.js';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { ReceiverConfig } from './server-config.js';

export interface ReceiverServerOptions {
  /** HOST:PORT; port 0 picks a free one. */
  listen: string;
  config: ReceiverConfig;
  /** Plaintext, every client "anonymous": loopback only unless allowInsecureRemote. */
  insecure?: boolean;
  allowInsecureRemote?: boolean;
  log?: Logger;
  /** Override the config's per-stream receive window; false keeps HTTP/2's 64 KiB for both windows (for measurements). */
  receiveWindowBytes?: number | false;
  /** Override the config's connection receive window. */
  connectionWindowBytes?: number;
  /** Called with each new HTTP/2 session (tests check its window). */
  onHttp2Session?: (s: ServerHttp2Session) => void;
}

export interface RunningReceiver {
  port: number;
  /** The port of the metrics listener (config metricsListen), if any. */
  metricsPort?: number;
  registry: TransferRegistry;
  /** Every running transfer's pipeline stage, the record budget, and each call's gRPC / HTTP/2 read state (serve logs it on SIGUSR2). */
  debugState(): Record<string, unknown>;
  /**
   * Applies a new config (serve on SIGHUP): the TLS files (new connections get
   * the new certificate) and the identities (new calls are authorized by them;
   * running transfers keep going). `load` reads and checks it; if it or the new
   * TLS files fail, this throws and the running config stays as it was. Other
   * keys change only at a restart (logged at warn).
   */
  reload(load: () => Promise<ReceiverConfig>): Promise<void>;
  /** Stops accepting, stops running transfers (each checkpoints), waits up to graceMs for calls to end. */
  close(graceMs?: number): Promise<void>;
}

/** Receiver config keys a reload does not apply (the server, its listeners and the registry are built from them at start). */
const RESTART_ONLY_KEYS = [
  'stateDir',
  'checkpointIntervalBytes',
  'transferExpiryMs',
  'maxChunkBytes',
  'receiveWindowBytes',
  'connectionWindowBytes',
  'maxActiveTransfers',
  'maxActiveTransfersPerIdentity',
  'maxStoredTransfersPerIdentity',
  'maxCompletedTransfersPerIdentity',
  'maxVolumeBytes',
  'idleTimeoutMs',
  'minBytesPerSecond',
  'progressWindowMs',
  'metricsListen',
  'maxBufferedBytes',
  'requireChecksum',
  'decodeWorkers',
] as const satisfies readonly (keyof ReceiverConfig)[];

/** TransferMode → BeginInfo.incremental. */
const INCREMENTAL = { TRANSFER_MODE_FULL: false, TRANSFER_MODE_INCREMENTAL: true } as const;
const COMPRESSIONS = { COMPRESSION_NONE: 'none', COMPRESSION_ZSTD: 'zstd' } as const;
const CHECKSUMS = { CHECKSUM_ALGORITHM_NONE: 'none', CHECKSUM_ALGORITHM_SHA256: 'sha256', CHECKSUM_ALGORITHM_BLAKE3: 'blake3' } as const;
const ENCODINGS = { ENCODING_RAW: 'raw', ENCODING_ZSTD: 'zstd', ENCODING_ZERO: 'zero' } as const;

function pick<T extends Record<string, string | boolean>>(table: T, v: unknown, field: string): T[keyof T] {
  if (typeof v === 'string' && Object.hasOwn(table, v)) return table[v as keyof T];
  throw new ThinshipError('BAD_STREAM', `begin: ${field} ${String(v)} is not one of ${Object.keys(table).join(', ')}`);
}

function uint(v: unknown): number {
  return typeof v === 'number' ? v : Number.NaN;
}

/**
 * grpc-js assembles each message into a Buffer of its own (Buffer.concat of the
 * framed message), and protobufjs decodes bytes fields as views into it. A
 * payload of at least 64 KiB whose ArrayBuffer is no bigger than one message
 * is therefore in a buffer nothing else uses (Node's shared 8 KiB pool is far
 * smaller): the decode worker may take that buffer over instead of a copy.
 */
function detachable(payload: Buffer): boolean {
  return payload.byteLength >= 64 * 1024 && payload.buffer instanceof ArrayBuffer && payload.buffer.byteLength <= payload.byteLength + MESSAGE_OVERHEAD_BYTES;
}

/**
 * A call's read side as grpc-js and Node's http2 see it, for a stuck-transfer
 * diagnosis: messages grpc-js holds (readQueue), whether the handler asked for
 * one (isReadPending), whether the HTTP/2 stream is paused (its stream window
 * then stays closed) and its windows. grpc-js internals: absent fields are
 * left out.
 */
function callReadState(call: object): Record<string, unknown> {
  let c: Record<string, unknown> | undefined = (call as { call?: Record<string, unknown> }).call;
  for (let i = 0; c && !('readQueue' in c) && i < 8; i++) c = (c.nextCall ?? c.call) as Record<string, unknown> | undefined;
  const rs = (call as { _readableState?: { length?: number; reading?: boolean; ended?: boolean } })._readableState;
  const out: Record<string, unknown> = { readableLength: rs?.length, readableReading: rs?.reading, readableEnded: rs?.ended };
  if (!c) return out;
  out.grpcQueued = (c.readQueue as unknown[] | undefined)?.length;
  out.grpcReadPending = c.isReadPending;
  out.grpcHalfClosed = c.receivedHalfClose;
  const st = c.stream as { isPaused?: () => boolean; readableLength?: number; state?: object; destroyed?: boolean } | undefined;
  if (st)
    Object.assign(out, {
      h2Paused: st.isPaused?.(),
      h2ReadableLength: st.readableLength,
      h2Destroyed: st.destroyed,
      h2State: st.destroyed ? undefined : st.state,
    });
  return out;
}

function buf(v: unknown): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.alloc(0);
}

/**
 * Version first (FAILED_PRECONDITION naming both), then the rest of the Begin:
 * the stream's begin (BeginInfo; proto3's '' / 0 for "not given" become absent
 * fields) and the call's own terms. rpc/client.ts pbBeginOf is the inverse.
 */
export function beginFromProto(b: Begin__Output): TransferBegin {
  if (b.protocolVersion !== PROTOCOL_VERSION) {
    throw new ThinshipError(
      'PROTOCOL_MISMATCH',
      `protocol version mismatch: the sender speaks thinship.v1 protocol version ${b.protocolVersion}, this receiver speaks version ${PROTOCOL_VERSION}`,
    );
  }
  const blockSizeBytes = uint(b.blockSizeBytes);
  const baseId = String(b.baseId ?? '');
  const sourceName = String(b.sourceName ?? '');
  return {
    transferId: String(b.transferId ?? ''),
    target: String(b.target ?? ''),
    incremental: pick(INCREMENTAL, b.mode, 'mode'),
    volumeSizeBytes: uint(b.volumeSizeBytes),
    ...(blockSizeBytes === 0 ? {} : { blockSizeBytes }),
    sourceId: String(b.sourceId ?? ''),
    ...(sourceName === '' ? {} : { sourceName }),
    ...(baseId === '' ? {} : { baseId }),
    plannedDataBytes: uint(b.plannedDataBytes),
    plannedUnmapBytes: uint(b.plannedUnmapBytes),
    resumeOffsetBytes: uint(b.resumeOffsetBytes),
    compression: pick(COMPRESSIONS, b.compression, 'compression'),
    checksum: pick(CHECKSUMS, b.checksum, 'checksum'),
    force: b.force === true,
    grow: b.grow === true,
  };
}

/** One ApplyStreamRequest after the Begin as a WireRecord (structure only; receiver/record-checks.ts checks the values). */
export function recordFromProto(m: DecodedApplyRequest): WireRecord {
  if (isMalformed(m)) return { type: 'invalid', what: m.malformed };
  switch (m.kind) {
    case 'data': {
      const d = m.data!;
      const encoding = typeof d.encoding === 'string' && Object.hasOwn(ENCODINGS, d.encoding) ? ENCODINGS[d.encoding as keyof typeof ENCODINGS] : undefined;
      if (!encoding)
        return { type: 'invalid', what: `data record at volume offset ${uint(d.offsetBytes)}: encoding ${String(d.encoding)} is not RAW, ZSTD or ZERO` };
      const payload = buf(d.payload);
      return {
        type: 'data',
        offsetBytes: uint(d.offsetBytes),
        lengthBytes: uint(d.lengthBytes),
        payload,
        encoding,
        checksum: buf(d.checksum),
        detachable: detachable(payload),
      };
    }
    case 'unmap':
      return { type: 'unmap', offsetBytes: uint(m.unmap!.offsetBytes), lengthBytes: uint(m.unmap!.lengthBytes) };
    case 'end': {
      const e = m.end!;
      return {
        type: 'end',
        records: uint(e.records),
        dataRecords: uint(e.dataRecords),
        unmapRecords: uint(e.unmapRecords),
        dataBytes: uint(e.dataBytes),
        unmapBytes: uint(e.unmapBytes),
        digest: buf(e.digest),
      };
    }
    case 'begin':
      return { type: 'invalid', what: 'a second Begin in one call' };
    default:
      return { type: 'invalid', what: 'a message with no record in it (none of begin, data, unmap, end set)' };
  }
}

function stateToProto(s: TransferStateView): TransferState {
  return {
    transferId: s.transferId,
    status: s.status === 'complete' ? 'TRANSFER_STATUS_COMPLETE' : 'TRANSFER_STATUS_IN_PROGRESS',
    target: s.target,
    mode: s.mode === 'full' ? 'TRANSFER_MODE_FULL' : 'TRANSFER_MODE_INCREMENTAL',
    sourceId: s.sourceId,
    baseId: s.baseId,
    volumeSizeBytes: s.volumeSizeBytes,
    checksum: CHECKSUM_PROTO_NAMES[s.checksum],
    durableOffsetBytes: s.durableOffsetBytes,
    digestState: Buffer.from(s.digestState, 'hex'),
    dataRecords: s.dataRecords,
    unmapRecords: s.unmapRecords,
    dataBytes: s.dataBytes,
    unmapBytes: s.unmapBytes,
    active: s.active,
    updateTime: timestampOfUnixMs(s.updatedUnixMs),
    expireTime: timestampOfUnixMs(s.expiresUnixMs),
  };
}

/** A target report (target-state/report.ts) as GetTargetResponse: no paths of the receiver's files. */
function targetToProto(r: TargetReport): GetTargetResponse {
  const rec = r.record?.record;
  return {
    target: r.target,
    kind: r.kind,
    record: rec
      ? {
          sourceId: rec.sourceId,
          baseId: rec.baseId,
          snapshotName: rec.snapshotName ?? '',
          volumeSizeBytes: rec.volumeSizeBytes,
          digest: Buffer.from(rec.digest, 'hex'),
          transferId: rec.transferId,
          receiveTime: timestampOfUnixMs(rec.receivedUnixMs),
        }
      : null,
    recordStore: r.record?.store ?? '',
    diverged: r.diverged,
    divergence: r.divergence,
    divergenceUnchecked: r.divergenceUnchecked ?? '',
    staged: r.staged.map((s) => ({ kind: s.kind })),
    identity: r.identity ?? '',
    lastSnapshot: r.lastSnapshot ?? '',
    keptSnapshots: r.keptSnapshots ?? [],
  };
}

/** At most this many refused-handshake lines per window; the rest are counted in the next line. */
const HANDSHAKE_LOG_LINES = 20;
const HANDSHAKE_LOG_WINDOW_MS = 10_000;

/**
 * Logs every TLS handshake the receiver refuses (wrong CA, expired or missing
 * client certificate, not TLS at all) at warn with the peer address and
 * OpenSSL's reason: grpc-js drops them silently, and they are what an
 * operator needs to see a misconfigured or hostile client. Rate-limited so a
 * flood of bad handshakes cannot flood the log.
 */
function logRefusedHandshakes(server: grpc.Server, log: Logger, metrics?: ReceiverMetrics): void {
  let windowStart = 0;
  let lines = 0;
  let suppressed = 0;
  // By the time http2 reports the error the TLS socket may be closed and have forgotten its
  // peer: note each connection's address when it arrives (the TLS socket wraps it as _parent).
  const peers = new WeakMap<object, string>();
  const ok = observeHttp2Servers(server, (h2) => {
    h2.on('connection', (raw: Socket) => {
      peers.set(raw, `${raw.remoteAddress}:${raw.remotePort}`);
    });
    h2.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket & { _parent?: object; authorizationError?: string }) => {
      metrics?.tlsRefusals.inc({ reason: tlsRefusalReason(socket.authorizationError ?? err.code) });
      const now = Date.now();
      if (now - windowStart > HANDSHAKE_LOG_WINDOW_MS) {
        windowStart = now;
        lines = 0;
      }
      if (++lines > HANDSHAKE_LOG_LINES) {
        suppressed++;
        return;
      }
      const peer = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : (peers.get(socket._parent ?? socket) ?? 'unknown');
      // A refused client certificate surfaces as a bare "socket hang up" (Node destroys the socket
      // after the handshake); the certificate's fault is in authorizationError.
      const why = socket.authorizationError ? `client certificate refused: ${socket.authorizationError}` : err.message;
      log.warn(
        { peer, reason: why, code: socket.authorizationError ?? err.code, ...(suppressed > 0 ? { suppressedBefore: suppressed } : {}) },
        'TLS handshake refused',
      );
      suppressed = 0;
    });
  });
  if (!ok) log.warn('this grpc-js has no Server.createHttp2Server: refused TLS handshakes are not logged');
}

export async function startReceiver(o: ReceiverServerOptions): Promise<RunningReceiver> {
  const log = (o.log ?? rootLog).child({ component: 'receiver' });
  const cfg = o.config;
  const { creds, tls } = await listenCredentials(o.listen, {
    insecure: o.insecure,
    allowInsecureRemote: o.allowInsecureRemote,
    tls: cfg.tls,
    configFile: cfg.file,
  });

  const windowBytes = o.receiveWindowBytes ?? cfg.receiveWindowBytes;
  let windows: ConnectionWindowControl | undefined;
  let activeTransfers = 0;
  // Sessions count as well as running transfers: a connection is granted its window when it
  // opens, before its transfer begins, and a granted window cannot be taken back.
  const rescaleWindows = () => {
    if (!windows) return;
    const n = Math.max(activeTransfers, windows.sessions.size - 1);
    windows.setWindow(connectionWindowFor(n), streamWindowFor(n));
  };
  // The decode queue gauge reads the registry when scraped (it is made just below).
  const metrics = createReceiverMetrics({ decodeQueueDepth: () => registry.decodeQueueDepth });
  const registry = new TransferRegistry({
    metrics,
    stateDir: cfg.stateDir,
    policy: cfg.policy,
    log,
    checkpointIntervalBytes: cfg.checkpointIntervalBytes,
    maxChunkBytes: cfg.maxChunkBytes,
    expiryMs: cfg.transferExpiryMs,
    requireChecksum: cfg.requireChecksum,
    maxActiveTransfers: cfg.maxActiveTransfers,
    decodeWorkers: cfg.decodeWorkers,
    maxActiveTransfersPerIdentity: cfg.maxActiveTransfersPerIdentity,
    maxStoredTransfersPerIdentity: cfg.maxStoredTransfersPerIdentity,
    maxCompletedTransfersPerIdentity: cfg.maxCompletedTransfersPerIdentity,
    maxVolumeBytes: cfg.maxVolumeBytes,
    idleTimeoutMs: cfg.idleTimeoutMs,
    minBytesPerSecond: cfg.minBytesPerSecond,
    progressWindowMs: cfg.progressWindowMs,
    maxBufferedBytes: cfg.maxBufferedBytes,
    keepSnapshots: cfg.keepSnapshots,
    onActiveChange: (n) => {
      activeTransfers = n;
      metrics.activeTransfers.set(n);
      rescaleWindows();
    },
  });
  const maxMessageBytes = cfg.maxChunkBytes + MESSAGE_OVERHEAD_BYTES;
  // The connection window follows the stream window unless set: one transfer is one stream.
  const connectionWindowBytes = o.connectionWindowBytes ?? cfg.connectionWindowBytes ?? (windowBytes || 0);
  /**
   * With n transfers running (and room for one more arriving), what the network may hold for
   * one transfer is its share of the network half of maxBufferedBytes less the one message
   * gRPC may queue for it, never above the configured windows (HTTP/2's 64 KiB at least).
   * The stream window is what bounds it (a paused stream holds up to its stream window; Node
   * gives connection credit back on receipt: bench/h2-window-hold.ts); the connection
   * window, the same share, limits what one sender has in flight.
   */
  const shareFor = (n: number) => registry.windowShareBytes(n + 1) - maxMessageBytes;
  const connectionWindowFor = (n: number) => Math.min(connectionWindowBytes, shareFor(n));
  const streamWindowFor = (n: number) => Math.min(windowBytes || 0, shareFor(n));
  if (windowBytes !== false) {
    windows = new ConnectionWindowControl(connectionWindowFor(0), log, streamWindowFor(0));
    windows.onSessionCount = rescaleWindows;
  }
  await registry.start();

  const server = new grpc.Server({
    'grpc.max_receive_message_length': cfg.maxChunkBytes + MESSAGE_OVERHEAD_BYTES,
    // Notice dead senders (a half-open connection holds its target until then).
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
  });
  if (windowBytes !== false) raiseReceiveWindow(server, { streamBytes: windowBytes, connectionBytes: connectionWindowBytes }, log, o.onHttp2Session, windows);
  if (!o.insecure) logRefusedHandshakes(server, log, metrics);

  // registry.policy: the identities of the config loaded last (reload).
  const who = (call: { getAuthContext(): AuthContextLike }): ClientIdentity =>
    callerIdentity(call, { insecure: o.insecure, identities: registry.policy.identities });

  /** Calls past their Begin, with their transfer id (debugState). */
  const openCalls = new Map<object, string>();
  const applyStream = async (call: grpc.ServerReadableStream<DecodedApplyRequest, ApplyStreamResponse>): Promise<ApplyStreamResponse> => {
    const id = who(call);
    const gone = new AbortController();
    call.on('cancelled', () => gone.abort(new ThinshipError('UNAVAILABLE', 'the sender cancelled the call or its connection broke', { retryable: true })));
    call.on('error', () => undefined); // reported through 'cancelled' / the iterator
    // grpc-js reads ahead up to the Readable's high-water mark (16 messages of up to
    // maxChunkBytes each); the registry asks for messages as its buffer budget allows, so
    // gRPC reads one only when asked (at most one queued, accounted in the window share).
    const rs = (call as unknown as { _readableState?: { highWaterMark?: number } })._readableState;
    if (rs && typeof rs.highWaterMark === 'number') rs.highWaterMark = 0;
    const it = call[Symbol.asyncIterator]() as AsyncIterator<DecodedApplyRequest>;
    // A call that never sends its Begin holds a stream (not a transfer slot): the idle timeout ends it too.
    let idle: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => {
        idle = setTimeout(
          () =>
            reject(
              new ThinshipError('UNAVAILABLE', `no Begin from the sender within ${registry.idleTimeoutMs / 1000} s (idleTimeoutSeconds)`, { retryable: true }),
            ),
          registry.idleTimeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(idle));
    if (first.done) throw new ThinshipError('BAD_STREAM', 'the call ended before its Begin');
    if (isMalformed(first.value)) throw new ThinshipError('BAD_STREAM', `the first message must be a Begin: ${first.value.malformed}`);
    if (first.value.kind !== 'begin' || !first.value.begin)
      throw new ThinshipError('BAD_STREAM', `the first message must be a Begin, got ${first.value.kind ?? 'an empty message'}`);
    const begin = beginFromProto(first.value.begin);
    openCalls.set(call, begin.transferId);
    log.debug({ peer: call.getPeer(), identity: id.name, transferId: begin.transferId }, 'ApplyStream');
    async function* records(): AsyncGenerator<WireRecord> {
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield recordFromProto(n.value);
      }
    }
    const r = await registry.apply(id, begin, records(), gone.signal).finally(() => openCalls.delete(call));
    return {
      transferId: r.transferId,
      dataRecordsApplied: r.dataRecordsApplied,
      unmapRecordsApplied: r.unmapRecordsApplied,
      bytesWritten: r.bytesWritten,
      bytesDiscarded: r.bytesDiscarded,
      digest: r.digest,
      state: stateToProto(r.state),
    };
  };

  const unary =
    <Req, Res>(name: string, fn: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      fn(call).then(
        (r) => cb(null, r),
        (e: unknown) => {
          const st = toServiceError(e);
          log.warn({ rpc: name, peer: call.getPeer(), code: st.code, err: st.details }, 'call refused');
          cb(st);
        },
      );
    };

  const { service } = receiverProto();
  const handlers: ReceiverServiceHandlers = {
    ApplyStream: (call, cb) => {
      // The service below decodes with applyRequestDeserializer: a message may be a MalformedRequest.
      applyStream(call as unknown as grpc.ServerReadableStream<DecodedApplyRequest, ApplyStreamResponse>).then(
        (r) => cb(null, r),
        (e: unknown) => {
          const st = toServiceError(e);
          // A refusal or a broken stream is an operator's business (warn); a sender that cancelled is not.
          log[st.code === grpc.status.CANCELLED ? 'info' : 'warn']({ rpc: 'ApplyStream', peer: call.getPeer(), code: st.code, err: st.details }, 'call failed');
          cb(st);
        },
      );
    },
    GetTransferState: unary('GetTransferState', async (call) => ({
      state: stateToProto(await registry.state(who(call), String(call.request.transferId ?? ''))),
    })),
    ListTransfers: unary('ListTransfers', async (call) => ({ transfers: registry.list(who(call)).map(stateToProto) })),
    GetTarget: unary('GetTarget', async (call) => targetToProto(await registry.targetReport(who(call), String(call.request.target ?? '')))),
    AbortTransfer: unary('AbortTransfer', async (call) => {
      const tid = String(call.request.transferId ?? '');
      const r = await registry.abort(who(call), tid, String(call.request.reason ?? '').slice(0, 500));
      return { transferId: tid, stoppedActiveStream: r.stopped, durableOffsetBytes: r.durableOffsetBytes };
    }),
  };
  // ApplyStream's requests through the hand-written decoder (Data payloads stay views into
  // grpc-js's message buffer); the shared definition (the client's) is left as it is.
  const serverService = {
    ...service,
    ApplyStream: { ...service.ApplyStream, requestDeserialize: applyRequestDeserializer(service.ApplyStream.requestDeserialize) },
  } as unknown as typeof service;
  server.addService(serverService, handlers);
  // Loaded here, not at the top: the bundled CLI keeps these two outside the bundle (they find
  // their .proto files through __dirname), and static imports would load them for every command.
  const [{ HealthImplementation, protoPath: healthProtoPath }, { ReflectionService }] = await Promise.all([
    import('grpc-health-check'),
    import('@grpc/reflection'),
  ]);
  const health = new HealthImplementation({ '': 'SERVING', [RECEIVER_SERVICE]: 'SERVING' });
  health.addToServer(server);
  // Reflection describes both services, so grpcurl can discover and call either.
  new ReflectionService(protoLoader.loadSync(['thinship/v1/receiver.proto', healthProtoPath], { ...LOADER_OPTIONS, includeDirs: [protoRoot()] })).addToServer(
    server,
  );

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(o.listen, creds, (e, p) =>
      e ? reject(new ThinshipError('USAGE', `cannot listen on ${o.listen}: ${e.message}`, { cause: e })) : resolve(p),
    );
  }).catch(async (e) => {
    await registry.close();
    throw e;
  });
  let ops: OpsListener | undefined;
  let stopping = false;
  if (cfg.metricsListen) {
    const mp = parseHostPort(cfg.metricsListen, 'metricsListen');
    // Ready: the config loaded (we are here), the state directory writable, the receiver not stopping.
    const ready = async () => {
      const problems: string[] = [];
      if (stopping) problems.push('the receiver is stopping');
      await access(cfg.stateDir, fsConstants.W_OK).catch((e: NodeJS.ErrnoException) =>
        problems.push(`state directory ${cfg.stateDir} is not writable (${e.code})`),
      );
      return problems;
    };
    ops = await startOpsListener({ host: mp.host, port: mp.port, registry: metrics.registry, ready }).catch(async (e) => {
      server.forceShutdown();
      await registry.close();
      throw e;
    });
    log.info({ metricsListen: cfg.metricsListen, port: ops.port }, 'metrics listening (/metrics, /healthz, /readyz)');
  }
  log.info(
    {
      listen: o.listen,
      port,
      tls: !o.insecure,
      stateDir: cfg.stateDir,
      receiveWindowBytes: windowBytes,
      connectionWindowBytes: windowBytes === false ? false : connectionWindowBytes,
      maxChunkBytes: cfg.maxChunkBytes,
      checkpointIntervalBytes: cfg.checkpointIntervalBytes,
    },
    'receiver listening',
  );

  let closing: Promise<void> | undefined;
  const reload = configReloader<ReceiverConfig>({
    daemon: 'serve',
    log,
    reloads: metrics.configReloads,
    started: cfg,
    restartOnlyKeys: RESTART_ONLY_KEYS,
    apply: async (next) => {
      // Everything is read and checked before anything is swapped: a bad new config changes nothing.
      if (tls && !next.tls) throw new ThinshipError('USAGE', `${next.file} has no "tls" section (ca, cert, key) any more`);
      const material = tls && next.tls ? await loadServerTls(next.tls) : undefined;
      registry.setPolicy(next.policy);
      if (tls && material) tls.update(material);
      log.info(
        {
          file: next.file,
          identities: [...next.policy.identities.keys()],
          ...(material ? { certificate: { serialNumber: material.serialNumber, fingerprint256: material.fingerprint256, validTo: material.validTo } } : {}),
          activeTransfers,
        },
        'config reloaded: new connections use its certificate and identities; running transfers go on',
      );
    },
  });
  return {
    port,
    metricsPort: ops?.port,
    registry,
    reload,
    debugState: () => ({ ...registry.debugState(), calls: [...openCalls].map(([call, transferId]) => ({ transferId, ...callReadState(call) })) }),
    close: (graceMs = 5000) =>
      (closing ??= (async () => {
        stopping = true;
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(RECEIVER_SERVICE, 'NOT_SERVING');
        await registry.close();
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, graceMs);
          server.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
        await ops?.close();
        log.info('receiver stopped');
      })()),
  };
}
