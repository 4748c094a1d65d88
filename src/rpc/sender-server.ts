/**
 * The sender daemon's gRPC server (proto/thinship/sender/v1/sender.proto): maps
 * SenderService calls onto service/transfer-manager.ts. mTLS like the
 * receiver; the caller's identity picks its rules in the sender config.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ThinshipError } from '../errors.js';
import { log as rootLog } from '../log.js';
import { TransferManager, type Caller, type SourceRequest, type TransferInfo, type TransferStateName } from '../service/transfer-manager.js';
import type { SenderConfig } from '../service/sender-config.js';
import { TransferStore } from '../service/transfer-store.js';
import { senderProto } from './proto.js';
import { toServiceError } from './status.js';
import { callerIdentity, listenCredentials, loadClientTls, loadServerTls, parseHostPort, type TlsFiles } from './tls.js';
import { access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { createSenderMetrics } from '../ops/metrics.js';
import { startOpsListener, type OpsListener } from '../ops/ops-listener.js';
import { configReloader } from '../ops/config-reload.js';

const SENDER_SERVICE = 'thinship.sender.v1.SenderService';

/** Wire shapes (proto-loader: camelCase, uint64 as Number, enums as names). */
interface PbSource {
  snapshot?: string;
  base?: string;
  offlinePool?: { metadataPath?: string; dataPath?: string; volumeSizeBytes?: number } | null;
}
interface PbTimestamp {
  seconds: number;
  nanos: number;
}

const STATE_NAMES: Record<TransferStateName, string> = {
  queued: 'STATE_QUEUED',
  planning: 'STATE_PLANNING',
  sending: 'STATE_SENDING',
  resuming: 'STATE_RESUMING',
  committing: 'STATE_COMMITTING',
  done: 'STATE_DONE',
  failed: 'STATE_FAILED',
  cancelled: 'STATE_CANCELLED',
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
    offlinePool: o
      ? {
          metadataPath: str(o.metadataPath, 'source.offline_pool.metadata_path'),
          dataPath: str(o.dataPath, 'source.offline_pool.data_path'),
          volumeSizeBytes: Number(o.volumeSizeBytes ?? 0) || undefined,
        }
      : undefined,
  };
}

function infoToProto(i: TransferInfo): Record<string, unknown> {
  return {
    transferId: i.transferId,
    requestId: i.requestId,
    source: {
      snapshot: i.source.snapshot,
      base: i.source.base ?? '',
      offlinePool: i.source.offlinePool ? { ...i.source.offlinePool, volumeSizeBytes: i.source.offlinePool.volumeSizeBytes ?? 0 } : null,
    },
    destination: { receiverAddress: i.destination.receiverAddress, serverName: i.destination.serverName ?? '', target: i.destination.target },
    state: STATE_NAMES[i.state],
    doneBytes: i.doneBytes,
    totalBytes: i.totalBytes,
    bytesPerSecond: i.bytesPerSecond,
    etaSeconds: i.etaSeconds,
    retries: i.retries,
    errorCode: i.errorCode,
    errorMessage: i.errorMessage,
    digest: i.digest,
    createTime: timestamp(i.createdMs),
    finishTime: timestamp(i.finishedMs),
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

export interface RunningSender {
  port: number;
  /** The port of the metrics listener (config metricsListen), if any. */
  metricsPort?: number;
  manager: TransferManager;
  /**
   * Applies a new config (sender-serve on SIGHUP): the daemon's server TLS files
   * (new connections see the new certificate), its client certificate towards
   * receivers (new receiver connections use it) and the identities (new calls
   * are authorized by them; running transfers go on). If `load` or the new
   * files fail, this throws and nothing changes. Other keys need a restart.
   */
  reload(load: () => Promise<SenderConfig>): Promise<void>;
  close(): Promise<void>;
}

/** Sender config keys a reload does not apply. */
const RESTART_ONLY_KEYS = ['stateDir', 'maxActiveTransfers', 'keepFinishedMs', 'metricsListen'] as const satisfies readonly (keyof SenderConfig)[];

/** The client TLS files' contents, to see whether a reload renewed them. */
async function clientTlsBytes(f: TlsFiles | undefined): Promise<string> {
  if (!f) return '';
  const l = await loadClientTls(f);
  return JSON.stringify([f, l.ca.toString('base64'), l.cert.toString('base64'), l.key.toString('base64')]);
}

export async function startSenderServer(o: SenderServerOptions): Promise<RunningSender> {
  const log = (o.log ?? rootLog).child({ component: 'sender-service' });
  const startCfg = o.config;
  /** The identities of the config loaded last (reload). */
  let identities = startCfg.identities;
  const { creds, tls } = await listenCredentials(o.listen, {
    insecure: o.insecure,
    allowInsecureRemote: o.allowInsecureRemote,
    tls: startCfg.tls,
    configFile: startCfg.file,
  });
  if (!o.insecureReceivers && !startCfg.receiverTls)
    throw new ThinshipError('USAGE', `${startCfg.file} has no "receiverTls" section: the daemon's own client certificate towards receivers`);
  let receiverTlsBytes = o.insecureReceivers ? '' : await clientTlsBytes(startCfg.receiverTls);
  const store = await TransferStore.open(startCfg.stateDir, log);
  const rulesOf = (owner: string) => {
    const r = identities.get(owner);
    return r ? [r] : [];
  };
  // The gauges read the manager when scraped (it is made just below).
  const metrics = createSenderMetrics({
    active: () => mgr.counts().active,
    queued: () => mgr.counts().queued,
    compressQueueDepth: () => mgr.compressQueueDepth(),
  });
  const mgr = new TransferManager({
    receiverTls: startCfg.receiverTls,
    insecure: o.insecureReceivers,
    maxActiveTransfers: startCfg.maxActiveTransfers,
    keepFinishedMs: startCfg.keepFinishedMs,
    log,
    lockDir: o.lockDir,
    retryDelayMs: o.retryDelayMs,
    store,
    rulesOf,
    metrics,
  });

  const caller = (call: { getAuthContext(): never }): Caller => {
    const id = callerIdentity(call, { insecure: o.insecure, identities });
    return {
      owner: id.name,
      rules: id.names.flatMap((n) => {
        const r = identities.get(n);
        return r ? [r] : [];
      }),
    };
  };
  const unary =
    <Req, Res>(name: string, fn: (c: Caller, req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      Promise.resolve()
        .then(() => fn(caller(call as never), call.request, call))
        .then(
          (r) => cb(null, r),
          (e: unknown) => {
            const st = toServiceError(e);
            log.warn({ rpc: name, peer: call.getPeer(), code: st.code, err: st.details }, 'call refused');
            cb(st);
          },
        );
    };

  const { Client } = senderProto();
  const server = new grpc.Server({ 'grpc.keepalive_time_ms': 60_000, 'grpc.keepalive_timeout_ms': 20_000 });
  server.addService(Client.service, {
    Plan: unary<{ source: PbSource; maxOpBytes: number }, Record<string, unknown>>('Plan', async (c, req, call) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const maxOp = Number(req.maxOpBytes ?? 0);
      if (maxOp !== 0 && (maxOp < 4096 || maxOp > 64 * 1024 * 1024)) throw new ThinshipError('USAGE', `max_op_bytes ${maxOp}: 4096 to 64 MiB, or 0 for 1 MiB`);
      return { ...(await mgr.plan(c, sourceFromProto(req.source), maxOp || undefined, ac.signal)) };
    }),
    StartTransfer: unary<
      {
        requestId: string;
        source: PbSource;
        destination?: { receiverAddress?: string; serverName?: string; target?: string } | null;
        options?: {
          noCompress?: boolean;
          bandwidthLimitBytesPerSecond?: number;
          maxRetries?: number;
          force?: boolean;
          grow?: boolean;
          checksum?: string;
        } | null;
      },
      Record<string, unknown>
    >('StartTransfer', async (c, req) => {
      const d = req.destination;
      if (!d?.receiverAddress || !d.target) throw new ThinshipError('USAGE', 'destination.receiver_address and destination.target are required');
      if (d.receiverAddress.length > 300 || d.target.length > 4096 || (d.serverName ?? '').length > 300)
        throw new ThinshipError('USAGE', 'destination fields are too long');
      const opt = req.options ?? {};
      const info = await mgr.start(c, {
        requestId: String(req.requestId ?? ''),
        source: sourceFromProto(req.source),
        destination: { receiverAddress: d.receiverAddress, serverName: d.serverName || undefined, target: d.target },
        options: {
          noCompress: opt.noCompress === true,
          bandwidthLimitBytesPerSecond: Number(opt.bandwidthLimitBytesPerSecond ?? 0),
          maxRetries: Math.min(Number(opt.maxRetries ?? 0), 1000),
          force: opt.force === true,
          grow: opt.grow === true,
          // Only when given: the options are part of a request's fingerprint (a repeated request id).
          ...(opt.checksum ? { checksum: opt.checksum } : {}),
        },
      });
      return { transfer: infoToProto(info) };
    }),
    WatchTransfer: (call: grpc.ServerWritableStream<{ transferId: string }, Record<string, unknown>>) => {
      let unsubscribe: () => void = () => undefined;
      try {
        unsubscribe = mgr.watch(caller(call as never), String(call.request.transferId ?? ''), (info) => {
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
    ListTransfers: unary<Record<string, never>, Record<string, unknown>>('ListTransfers', async (c) => ({ transfers: mgr.list(c).map(infoToProto) })),
    GetTransfer: unary<{ transferId: string }, Record<string, unknown>>('GetTransfer', async (c, req) => ({
      transfer: infoToProto(mgr.get(c, String(req.transferId ?? ''))),
    })),
    CancelTransfer: unary<{ transferId: string; reason: string }, Record<string, unknown>>('CancelTransfer', async (c, req) => ({
      transfer: infoToProto(await mgr.cancel(c, String(req.transferId ?? ''), String(req.reason ?? '').slice(0, 500))),
    })),
  });
  const [{ HealthImplementation }] = await Promise.all([import('grpc-health-check')]);
  const health = new HealthImplementation({ '': 'SERVING', [SENDER_SERVICE]: 'SERVING' });
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(o.listen, creds, (e, p) =>
      e ? reject(new ThinshipError('USAGE', `cannot listen on ${o.listen}: ${e.message}`, { cause: e })) : resolve(p),
    );
  }).catch(async (e) => {
    await mgr.close();
    throw e;
  });
  let ops: OpsListener | undefined;
  let stopping = false;
  if (startCfg.metricsListen) {
    const mp = parseHostPort(startCfg.metricsListen, 'metricsListen');
    // Ready: the config loaded (we are here), the state directory writable, the daemon not stopping.
    const ready = async () => {
      const problems: string[] = [];
      if (stopping) problems.push('the sender daemon is stopping');
      await access(startCfg.stateDir, fsConstants.W_OK).catch((e: NodeJS.ErrnoException) =>
        problems.push(`state directory ${startCfg.stateDir} is not writable (${e.code})`),
      );
      return problems;
    };
    ops = await startOpsListener({ host: mp.host, port: mp.port, registry: metrics.registry, ready }).catch(async (e) => {
      server.forceShutdown();
      await mgr.close();
      throw e;
    });
    log.info({ metricsListen: startCfg.metricsListen, port: ops.port }, 'metrics listening (/metrics, /healthz, /readyz)');
  }
  const resumed = await mgr.restore();
  log.info(
    { listen: o.listen, port, tls: !o.insecure, maxActiveTransfers: startCfg.maxActiveTransfers, stateDir: startCfg.stateDir, resumedTransfers: resumed },
    'sender service listening',
  );
  let closing: Promise<void> | undefined;
  const reload = configReloader<SenderConfig>({
    daemon: 'sender-serve',
    log,
    reloads: metrics.configReloads,
    started: startCfg,
    restartOnlyKeys: RESTART_ONLY_KEYS,
    apply: async (next) => {
      // Everything is read and checked before anything is swapped: a bad new config changes nothing.
      if (tls && !next.tls) throw new ThinshipError('USAGE', `${next.file} has no "tls" section (ca, cert, key) any more`);
      if (!o.insecureReceivers && !next.receiverTls) throw new ThinshipError('USAGE', `${next.file} has no "receiverTls" section any more`);
      const material = tls && next.tls ? await loadServerTls(next.tls) : undefined;
      const nextReceiverTlsBytes = o.insecureReceivers ? '' : await clientTlsBytes(next.receiverTls);
      identities = next.identities;
      if (tls && material) tls.update(material);
      const receiverTlsRenewed = nextReceiverTlsBytes !== receiverTlsBytes;
      if (receiverTlsRenewed) {
        mgr.setReceiverTls(next.receiverTls);
        receiverTlsBytes = nextReceiverTlsBytes;
      }
      log.info(
        {
          file: next.file,
          identities: [...next.identities.keys()],
          ...(material ? { certificate: { serialNumber: material.serialNumber, fingerprint256: material.fingerprint256, validTo: material.validTo } } : {}),
          receiverTlsRenewed,
          activeTransfers: mgr.counts().active,
        },
        'config reloaded: new connections use its certificates and identities; running transfers go on',
      );
    },
  });
  return {
    port,
    metricsPort: ops?.port,
    manager: mgr,
    reload,
    close: () =>
      (closing ??= (async () => {
        stopping = true;
        health.setStatus('', 'NOT_SERVING');
        await mgr.close();
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 5000);
          server.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
        await ops?.close();
        log.info('sender service stopped');
      })()),
  };
}
