/**
 * The sender daemon's gRPC server (proto/thinship/sender/v1/sender.proto): maps
 * SenderService calls onto service/transfer-manager.ts. mTLS like the
 * receiver; the caller's identity picks its rules in the sender config.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from 'pino';
import { ThinshipError } from '../errors.js';
import { log as rootLog } from '../log.js';
import { TransferManager, type Caller, type SourceRequest, type TransferInfo, type TransferStateName } from '../service/transfer-manager.js';
import type { SenderConfig } from '../service/sender-config.js';
import { TransferStore } from '../service/transfer-store.js';
import { LOADER_OPTIONS } from './proto.js';
import { toServiceError } from './status.js';
import { callerNames, listenCredentials } from './tls.js';

const SENDER_SERVICE = 'thinship.sender.v1.SenderService';

function senderProtoPath(): string {
  for (const rel of ['../../../proto/thinship/sender/v1/sender.proto', '../../proto/thinship/sender/v1/sender.proto']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new ThinshipError('INTERNAL', 'proto/thinship/sender/v1/sender.proto is missing from the installation');
}

export function senderProto(): { def: protoLoader.PackageDefinition; Client: grpc.ServiceClientConstructor } {
  const def = protoLoader.loadSync(senderProtoPath(), LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { thinship: { sender: { v1: { SenderService: grpc.ServiceClientConstructor } } } };
  return { def, Client: pkg.thinship.sender.v1.SenderService };
}

/** Wire shapes (proto-loader: camelCase, uint64 as Number, enums as names). */
interface PbSource { snapshot?: string; base?: string; offlinePool?: { metadataPath?: string; dataPath?: string; volumeSizeBytes?: number } | null }
interface PbTimestamp { seconds: number; nanos: number }

const STATE_NAMES: Record<TransferStateName, string> = {
  queued: 'STATE_QUEUED', planning: 'STATE_PLANNING', sending: 'STATE_SENDING', resuming: 'STATE_RESUMING',
  committing: 'STATE_COMMITTING', done: 'STATE_DONE', failed: 'STATE_FAILED', cancelled: 'STATE_CANCELLED',
};

function timestamp(ms: number): PbTimestamp | null {
  return ms === 0 ? null : { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function sourceFromProto(s: PbSource | null | undefined): SourceRequest {
  const str = (x: unknown, what: string, max = 4096) => {
    const v = typeof x === 'string' ? x : '';
    if (v.length > max) throw new ThinshipError('USAGE', `${what} is longer than ${max} bytes`);
    return v;
  };
  if (!s || !s.snapshot) throw new ThinshipError('USAGE', 'source.snapshot is required');
  const o = s.offlinePool;
  return {
    snapshot: str(s.snapshot, 'source.snapshot', 300),
    base: str(s.base, 'source.base', 300) || undefined,
    offlinePool: o ? { metadataPath: str(o.metadataPath, 'source.offline_pool.metadata_path'), dataPath: str(o.dataPath, 'source.offline_pool.data_path'), volumeSizeBytes: Number(o.volumeSizeBytes ?? 0) || undefined } : undefined,
  };
}

function infoToProto(i: TransferInfo): Record<string, unknown> {
  return {
    transferId: i.transferId, requestId: i.requestId,
    source: { snapshot: i.source.snapshot, base: i.source.base ?? '', offlinePool: i.source.offlinePool ? { ...i.source.offlinePool, volumeSizeBytes: i.source.offlinePool.volumeSizeBytes ?? 0 } : null },
    destination: { receiverAddress: i.destination.receiverAddress, serverName: i.destination.serverName ?? '', target: i.destination.target },
    state: STATE_NAMES[i.state], doneBytes: i.doneBytes, totalBytes: i.totalBytes, bytesPerSecond: i.bytesPerSecond, etaSeconds: i.etaSeconds,
    retries: i.retries, errorCode: i.errorCode, errorMessage: i.errorMessage, digest: i.digest,
    createTime: timestamp(i.createdMs), finishTime: timestamp(i.finishedMs),
  };
}

export interface SenderServerOptions {
  listen: string;
  config: SenderConfig;
  insecure?: boolean;
  allowInsecureRemote?: boolean;
  /** Plaintext towards receivers (loopback tests). */
  insecureReceivers?: boolean;
  log?: Logger;
  lockDir?: string;
  retryDelayMs?: number;
}

export interface RunningSender { port: number; manager: TransferManager; close(): Promise<void> }

export async function startSenderServer(o: SenderServerOptions): Promise<RunningSender> {
  const log = (o.log ?? rootLog).child({ component: 'sender-service' });
  const cfg = o.config;
  const creds = await listenCredentials(o.listen, { insecure: o.insecure, allowInsecureRemote: o.allowInsecureRemote, tls: cfg.tls, configFile: cfg.file });
  if (!o.insecureReceivers && !cfg.receiverTls) throw new ThinshipError('USAGE', `${cfg.file} has no "receiverTls" section: the daemon's own client certificate towards receivers`);
  const store = await TransferStore.open(cfg.stateDir, log);
  const rulesOf = (owner: string) => { const r = cfg.identities.get(owner); return r ? [r] : []; };
  const manager = new TransferManager({ receiverTls: cfg.receiverTls, insecure: o.insecureReceivers, maxActiveTransfers: cfg.maxActiveTransfers, keepFinishedMs: cfg.keepFinishedMs, log, lockDir: o.lockDir, retryDelayMs: o.retryDelayMs, store, rulesOf });

  const caller = (call: { getAuthContext(): never }): Caller => {
    const names = o.insecure ? ['anonymous'] : callerNames(call);
    if (names.length === 0) throw new ThinshipError('UNAUTHENTICATED', 'no verified client certificate on this connection');
    const owner = names.find((n) => cfg.identities.has(n)) ?? names[0]!;
    return { owner, rules: names.flatMap((n) => { const r = cfg.identities.get(n); return r ? [r] : []; }) };
  };
  const unary = <Req, Res>(name: string, fn: (c: Caller, req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      Promise.resolve().then(() => fn(caller(call as never), call.request, call)).then((r) => cb(null, r), (e: unknown) => {
        const st = toServiceError(e);
        log.warn({ rpc: name, peer: call.getPeer(), code: st.code, err: st.details }, 'call refused');
        cb(st);
      });
    };

  const { Client } = senderProto();
  const server = new grpc.Server({ 'grpc.keepalive_time_ms': 60_000, 'grpc.keepalive_timeout_ms': 20_000 });
  server.addService(Client.service, {
    Plan: unary<{ source: PbSource; maxOpBytes: number }, Record<string, unknown>>('Plan', async (c, req, call) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const maxOp = Number(req.maxOpBytes ?? 0);
      if (maxOp !== 0 && (maxOp < 4096 || maxOp > 64 * 1024 * 1024)) throw new ThinshipError('USAGE', `max_op_bytes ${maxOp}: 4096 to 64 MiB, or 0 for 1 MiB`);
      return { ...(await manager.plan(c, sourceFromProto(req.source), maxOp || undefined, ac.signal)) };
    }),
    StartTransfer: unary<{ requestId: string; source: PbSource; destination?: { receiverAddress?: string; serverName?: string; target?: string } | null; options?: { noCompress?: boolean; bandwidthLimitBytesPerSecond?: number; maxRetries?: number } | null }, Record<string, unknown>>('StartTransfer', async (c, req) => {
      const d = req.destination;
      if (!d?.receiverAddress || !d.target) throw new ThinshipError('USAGE', 'destination.receiver_address and destination.target are required');
      if (d.receiverAddress.length > 300 || d.target.length > 4096 || (d.serverName ?? '').length > 300) throw new ThinshipError('USAGE', 'destination fields are too long');
      const opt = req.options ?? {};
      const info = await manager.start(c, {
        requestId: String(req.requestId ?? ''), source: sourceFromProto(req.source),
        destination: { receiverAddress: d.receiverAddress, serverName: d.serverName || undefined, target: d.target },
        options: { noCompress: opt.noCompress === true, bandwidthLimitBytesPerSecond: Number(opt.bandwidthLimitBytesPerSecond ?? 0), maxRetries: Math.min(Number(opt.maxRetries ?? 0), 1000) },
      });
      return { transfer: infoToProto(info) };
    }),
    WatchTransfer: (call: grpc.ServerWritableStream<{ transferId: string }, Record<string, unknown>>) => {
      let unsubscribe: () => void = () => undefined;
      try {
        unsubscribe = manager.watch(caller(call as never), String(call.request.transferId ?? ''), (info) => {
          call.write({ transfer: infoToProto(info) });
          if (info.state === 'done' || info.state === 'failed' || info.state === 'cancelled') call.end();
        });
      } catch (e) {
        const st = toServiceError(e);
        log.warn({ rpc: 'WatchTransfer', peer: call.getPeer(), code: st.code, err: st.details }, 'call refused');
        call.destroy(Object.assign(new Error(st.details), st));
        return;
      }
      call.on('cancelled', () => unsubscribe());
    },
    ListTransfers: unary<Record<string, never>, Record<string, unknown>>('ListTransfers', async (c) => ({ transfers: manager.list(c).map(infoToProto) })),
    GetTransfer: unary<{ transferId: string }, Record<string, unknown>>('GetTransfer', async (c, req) => ({ transfer: infoToProto(manager.get(c, String(req.transferId ?? ''))) })),
    CancelTransfer: unary<{ transferId: string; reason: string }, Record<string, unknown>>('CancelTransfer', async (c, req) => ({ transfer: infoToProto(await manager.cancel(c, String(req.transferId ?? ''), String(req.reason ?? '').slice(0, 500))) })),
  });
  const [{ HealthImplementation }] = await Promise.all([import('grpc-health-check')]);
  const health = new HealthImplementation({ '': 'SERVING', [SENDER_SERVICE]: 'SERVING' });
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(o.listen, creds, (e, p) => (e ? reject(new ThinshipError('USAGE', `cannot listen on ${o.listen}: ${e.message}`, { cause: e })) : resolve(p)));
  }).catch(async (e) => { await manager.close(); throw e; });
  const resumed = await manager.restore();
  log.info({ listen: o.listen, port, tls: !o.insecure, maxActiveTransfers: cfg.maxActiveTransfers, stateDir: cfg.stateDir, resumedTransfers: resumed }, 'sender service listening');
  let closing: Promise<void> | undefined;
  return {
    port,
    manager,
    close: () => closing ??= (async () => {
      health.setStatus('', 'NOT_SERVING');
      await manager.close();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { server.forceShutdown(); resolve(); }, 5000);
        server.tryShutdown(() => { clearTimeout(t); resolve(); });
      });
      log.info('sender service stopped');
    })(),
  };
}
