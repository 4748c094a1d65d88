/**
 * The sender daemon's transfers, transport-neutral: queued by callers (who own
 * them), planned and sent one pool at a time and up to a global limit at once,
 * watched, listed and cancelled. The gRPC adapter is rpc/sender-server.ts.
 *
 * A transfer runs the same steps as `thinship send --to`: plan under the pool's
 * metadata snapshot (planSend), read the snapshot (openSourceReader), stream
 * with resume (sendPlanOverGrpc). Receiver connections (one per receiver
 * address) and the compression workers are kept for the daemon's life, so a
 * small incremental pays neither a TLS handshake nor a worker start.
 */
import { createHash } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import type { Logger } from 'pino';
import { ThinshipError, asThinshipError, type ErrorCode } from '../errors.js';
import { planSend, type SendPlan, type SourceSpec } from '../thin/planner.js';
import { DEFAULT_MAX_OP_BYTES } from '../thin/plan.js';
import { openSourceReader } from '../sender/volume-reader.js';
import { CompressPool } from '../sender/compress-pool.js';
import { ReceiverClient, sendPlanOverGrpc } from '../rpc/client.js';
import type { TlsFiles } from '../rpc/tls.js';
import { TokenBucket } from '../stream/bandwidth.js';
import { RateWindow } from '../stream/rate-window.js';
import { isInside } from '../receiver/access.js';
import type { SenderAction, SenderIdentityRules } from './sender-config.js';
import { globMatch } from '../rpc/config-file.js';
import type { SenderMetrics } from '../ops/metrics.js';
import type { TransferStore } from './transfer-store.js';
import type { RecordChecksum } from '../stream/integrity.js';

export type TransferStateName = 'queued' | 'planning' | 'sending' | 'resuming' | 'committing' | 'done' | 'failed' | 'cancelled';
const FINAL: ReadonlySet<TransferStateName> = new Set(['done', 'failed', 'cancelled']);

export interface SourceRequest {
  snapshot: string;
  base?: string;
  offlinePool?: { metadataPath: string; dataPath: string; volumeSizeBytes?: number };
}
export interface DestinationRequest {
  receiverAddress: string;
  serverName?: string;
  target: string;
}
export interface TransferOptionsRequest {
  noCompress?: boolean;
  bandwidthLimitBytesPerSecond?: number;
  maxRetries?: number;
  /** Begin.force / Begin.grow towards the receiver (send --to's --force / --grow). */
  force?: boolean;
  grow?: boolean;
  /** The per-record checksum of a new transfer ("blake3" or "sha256"); absent: the default (BLAKE3, sha256 for an older receiver). */
  checksum?: string;
}
export interface StartRequest {
  requestId: string;
  source: SourceRequest;
  destination: DestinationRequest;
  options: TransferOptionsRequest;
}

export interface TransferInfo {
  transferId: string;
  requestId: string;
  source: SourceRequest;
  destination: DestinationRequest;
  state: TransferStateName;
  doneBytes: number;
  totalBytes: number;
  bytesPerSecond: number;
  etaSeconds: number;
  retries: number;
  errorCode: ErrorCode | '';
  errorMessage: string;
  digest: string;
  createdMs: number;
  finishedMs: number;
}

export interface PlanSummary {
  mode: 'full' | 'incremental';
  dataBytes: number;
  unmapBytes: number;
  dataOps: number;
  unmapOps: number;
  volumeSizeBytes: number;
  blockSizeBytes: number;
}

/** Who calls: the names of its certificate and the rules that apply (union over the names). */
export interface Caller {
  owner: string;
  rules: SenderIdentityRules[];
}

export interface TransferManagerOptions {
  receiverTls?: TlsFiles;
  /** Plaintext to receivers: loopback tests only. */
  insecure?: boolean;
  maxActiveTransfers: number;
  keepFinishedMs: number;
  log: Logger;
  /** Plan options for tests (lock dir, metadata reader). */
  lockDir?: string;
  /** First resume delay (default 1000 ms, as send --to). */
  retryDelayMs?: number;
  /** Where transfers are remembered across restarts (none: memory only). */
  store?: TransferStore;
  /** The rules of an identity now (for transfers restored after a restart). */
  rulesOf?: (owner: string) => SenderIdentityRules[];
  /** Counters of bytes, outcomes and retries (ops/metrics.ts createSenderMetrics). */
  metrics?: SenderMetrics;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
const WATCH_INTERVAL_MS = 1000;

interface Transfer {
  info: TransferInfo;
  owner: string;
  request: StartRequest;
  /** Saves in order: a slow save never overwrites a newer state. */
  saving: Promise<void>;
  /** The request as given, to recognise a repeat of the same request id. */
  fingerprint: string;
  ac: AbortController;
  watchers: Set<(info: TransferInfo) => void>;
  rate: RateWindow;
  lastNotifyMs: number;
  done: Promise<void>;
}

export class TransferManager {
  private readonly transfers = new Map<string, Transfer>();
  private readonly clients = new Map<string, Promise<ReceiverClient>>();
  /** Connections made with a client certificate a reload replaced: in use by running transfers, closed with the manager. */
  private readonly retiredClients: Promise<ReceiverClient>[] = [];
  private readonly pools = new Map<boolean, CompressPool>();
  /** Per pool key: the tail of its queue (transfers on one pool take turns). */
  private readonly poolTurns = new Map<string, Promise<void>>();
  private active = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private closed = false;
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly o: TransferManagerOptions) {
    this.sweep = setInterval(() => this.forgetOld(), 60_000);
    this.sweep.unref();
  }

  /**
   * Loads the transfers a previous daemon remembered: finished ones are listed
   * again; ones that were running are queued again and resume on the receiver
   * (their transfer ids are the same). A caller whose rules no longer allow the
   * send sees it failed with PERMISSION_DENIED.
   */
  async restore(): Promise<number> {
    const store = this.o.store;
    if (!store) return 0;
    let resumed = 0;
    for (const r of await store.loadAll()) {
      const t: Transfer = {
        info: r.info,
        owner: r.owner,
        request: r.request,
        saving: Promise.resolve(),
        fingerprint: JSON.stringify([r.request.source, r.request.destination, r.request.options]),
        ac: new AbortController(),
        watchers: new Set(),
        rate: new RateWindow(),
        lastNotifyMs: 0,
        done: Promise.resolve(),
      };
      this.transfers.set(r.info.transferId, t);
      if (FINAL.has(r.info.state)) continue;
      resumed++;
      const c: Caller = { owner: r.owner, rules: this.o.rulesOf?.(r.owner) ?? [] };
      this.set(t, { state: 'queued', bytesPerSecond: 0, etaSeconds: 0, errorMessage: `resumed after a restart of the sender daemon (was ${r.info.state})` });
      this.o.log.info({ transferId: r.info.transferId, owner: r.owner, was: r.info.state }, 'transfer resumed after a restart');
      t.done = (async () => {
        let spec: SourceSpec;
        try {
          TransferManager.allowed(c, 'start');
          spec = await authorizeSource(c, r.request.source);
          authorizeDestination(c, r.request.destination);
        } catch (e) {
          const err = asThinshipError(e);
          this.set(t, { state: 'failed', errorCode: err.code, errorMessage: `not resumed after a restart: ${err.message}`, finishedMs: Date.now() });
          this.o.metrics?.transfers.inc({ outcome: 'failed', code: err.code });
          return;
        }
        await this.run(t, c, spec, r.request);
      })().catch((e: unknown) => this.o.log.error({ transferId: r.info.transferId, err: (e as Error).message }, 'transfer runner failed'));
    }
    return resumed;
  }

  /** Transfers holding a slot (planning, sending, resuming, committing) and ones waiting for their pool or a slot. */
  counts(): { active: number; queued: number } {
    let queued = 0;
    for (const t of this.transfers.values()) if (t.info.state === 'queued') queued++;
    return { active: this.active, queued };
  }

  /** Chunks in the compression workers now. */
  compressQueueDepth(): number {
    let n = 0;
    for (const p of this.pools.values()) n += p.pendingJobs;
    return n;
  }

  /**
   * The daemon's client certificate towards receivers after a reload: new
   * connections use it; running transfers keep the connection they have (it
   * is closed with the manager). The files are read again even if their paths
   * did not change (a renewed certificate in place).
   */
  setReceiverTls(tls: TlsFiles | undefined): void {
    this.o.receiverTls = tls;
    this.retiredClients.push(...this.clients.values());
    this.clients.clear();
  }

  /** Checks an action against the caller's rules. */
  static allowed(c: Caller, action: SenderAction): void {
    if (!c.rules.some((r) => r.actions.has(action)))
      throw new ThinshipError('PERMISSION_DENIED', `identity ${c.owner} may not ${action} transfers on this sender`);
  }

  async plan(c: Caller, source: SourceRequest, maxOpBytes = DEFAULT_MAX_OP_BYTES, signal?: AbortSignal): Promise<PlanSummary> {
    TransferManager.allowed(c, 'plan');
    const spec = await authorizeSource(c, source);
    const p = await planSend(spec, { maxOpBytes, lockDir: this.o.lockDir, signal });
    try {
      checkPoolRule(c, p);
      const t = p.plan.totals;
      return {
        mode: p.mode,
        dataBytes: t.dataBytes,
        unmapBytes: t.unmapBytes,
        dataOps: t.dataOps,
        unmapOps: t.unmapOps,
        volumeSizeBytes: t.volumeSizeBytes,
        blockSizeBytes: t.blockSizeBytes,
      };
    } finally {
      await p.close();
    }
  }

  async start(c: Caller, req: StartRequest): Promise<TransferInfo> {
    TransferManager.allowed(c, 'start');
    if (this.closed) throw new ThinshipError('UNAVAILABLE', 'the sender daemon is stopping', { retryable: true });
    if (!REQUEST_ID.test(req.requestId)) throw new ThinshipError('USAGE', `request_id "${req.requestId.slice(0, 140)}" must be 1-128 of [A-Za-z0-9._-]`);
    const transferId = `tsd-${createHash('sha256')
      .update(JSON.stringify([c.owner, req.requestId]))
      .digest('hex')
      .slice(0, 32)}`;
    const fingerprint = JSON.stringify([req.source, req.destination, req.options]);
    const existing = this.transfers.get(transferId);
    if (existing) {
      if (existing.fingerprint !== fingerprint)
        throw new ThinshipError('USAGE', `request_id ${req.requestId} was already used for a different request (transfer ${transferId})`);
      return { ...existing.info };
    }
    const spec = await authorizeSource(c, req.source);
    authorizeDestination(c, req.destination);
    if (
      req.options.bandwidthLimitBytesPerSecond !== undefined &&
      req.options.bandwidthLimitBytesPerSecond !== 0 &&
      req.options.bandwidthLimitBytesPerSecond < 1024
    ) {
      throw new ThinshipError('USAGE', `bandwidth_limit_bytes_per_second ${req.options.bandwidthLimitBytesPerSecond}: at least 1024, or 0 for none`);
    }
    if (req.options.checksum !== undefined && req.options.checksum !== 'blake3' && req.options.checksum !== 'sha256')
      throw new ThinshipError('USAGE', `options.checksum "${req.options.checksum.slice(0, 40)}" must be blake3, sha256, or empty for the default`);
    const t: Transfer = {
      info: {
        transferId,
        requestId: req.requestId,
        source: req.source,
        destination: req.destination,
        state: 'queued',
        doneBytes: 0,
        totalBytes: 0,
        bytesPerSecond: 0,
        etaSeconds: 0,
        retries: 0,
        errorCode: '',
        errorMessage: '',
        digest: '',
        createdMs: Date.now(),
        finishedMs: 0,
      },
      owner: c.owner,
      request: req,
      saving: Promise.resolve(),
      fingerprint,
      ac: new AbortController(),
      watchers: new Set(),
      rate: new RateWindow(),
      lastNotifyMs: 0,
      done: Promise.resolve(),
    };
    this.transfers.set(transferId, t);
    this.persist(t);
    this.o.log.info({ transferId, owner: c.owner, source: req.source, destination: req.destination }, 'transfer queued');
    t.done = this.run(t, c, spec, req).catch((e: unknown) => this.o.log.error({ transferId, err: (e as Error).message }, 'transfer runner failed'));
    return { ...t.info };
  }

  get(c: Caller, transferId: string): TransferInfo {
    TransferManager.allowed(c, 'watch');
    return { ...this.owned(c, transferId).info };
  }

  list(c: Caller): TransferInfo[] {
    TransferManager.allowed(c, 'watch');
    return [...this.transfers.values()]
      .filter((t) => t.owner === c.owner)
      .map((t) => ({ ...t.info }))
      .sort((a, b) => b.createdMs - a.createdMs);
  }

  /** Calls `listener` with the current state at once, then on every change; returns the unsubscribe. The last call is a final state. */
  watch(c: Caller, transferId: string, listener: (info: TransferInfo) => void): () => void {
    TransferManager.allowed(c, 'watch');
    const t = this.owned(c, transferId);
    listener({ ...t.info });
    if (FINAL.has(t.info.state)) return () => undefined;
    t.watchers.add(listener);
    return () => t.watchers.delete(listener);
  }

  async cancel(c: Caller, transferId: string, reason: string): Promise<TransferInfo> {
    TransferManager.allowed(c, 'cancel');
    const t = this.owned(c, transferId);
    if (!FINAL.has(t.info.state)) {
      t.ac.abort(new ThinshipError('ABORTED', `cancelled by ${c.owner}${reason ? `: ${reason}` : ''}`));
      await t.done;
    }
    return { ...t.info };
  }

  /** Cancels every running transfer (their receiver-side transfers stay resumable) and closes connections and workers. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweep);
    for (const t of this.transfers.values()) if (!FINAL.has(t.info.state)) t.ac.abort(new ThinshipError('ABORTED', 'the sender daemon is stopping'));
    await Promise.all([...this.transfers.values()].map((t) => t.done));
    await Promise.all([...this.transfers.values()].map((t) => t.saving));
    for (const c of [...this.clients.values(), ...this.retiredClients]) (await c.catch(() => undefined))?.close();
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    await this.o.store?.close();
  }

  private owned(c: Caller, transferId: string): Transfer {
    const t = this.transfers.get(transferId);
    // Another identity's transfer is "not found": its existence is not the caller's business.
    if (!t || t.owner !== c.owner) throw new ThinshipError('NOT_FOUND', `no transfer ${transferId.slice(0, 140)}`);
    return t;
  }

  private set(t: Transfer, patch: Partial<TransferInfo>, force = true): void {
    Object.assign(t.info, patch);
    // A change of state is saved (progress is not: the receiver holds the durable offset). A
    // transfer stopped because the daemon stops keeps its saved running state, so that the
    // next daemon resumes it.
    if (force && !(this.closed && t.info.state === 'cancelled')) this.persist(t);
    const now = Date.now();
    if (!force && now - t.lastNotifyMs < WATCH_INTERVAL_MS) return;
    t.lastNotifyMs = now;
    const snapshot = { ...t.info };
    for (const w of t.watchers) w(snapshot);
    if (FINAL.has(t.info.state)) t.watchers.clear();
  }

  private persist(t: Transfer): void {
    const store = this.o.store;
    if (!store) return;
    const snapshot = { owner: t.owner, request: t.request, info: { ...t.info } };
    t.saving = t.saving
      .then(() => store.save(snapshot))
      .catch((e: unknown) => {
        this.o.log.error({ transferId: t.info.transferId, err: (e as Error).message }, 'could not save the transfer record');
      });
  }

  private progress(t: Transfer, doneBytes: number): void {
    const now = performance.now();
    t.rate.add(now, doneBytes);
    const rate = t.rate.bytesPerSecond() ?? 0;
    const left = Math.max(0, t.info.totalBytes - doneBytes);
    const state = t.info.totalBytes > 0 && doneBytes >= t.info.totalBytes ? 'committing' : 'sending';
    this.set(t, { doneBytes, bytesPerSecond: Math.round(rate), etaSeconds: rate > 0 ? Math.ceil(left / rate) : 0, state }, state !== t.info.state);
  }

  private async run(t: Transfer, c: Caller, spec: SourceSpec, req: StartRequest): Promise<void> {
    const signal = t.ac.signal;
    const key = await poolKey(spec);
    let releaseTurn: () => void = () => undefined;
    let slot = false;
    let plan: SendPlan | undefined;
    // The final state is set last, once the source is closed and the slot released: whoever sees a transfer
    // done (a caller polling status, a metrics scrape) sees its slot free and the gauges already down.
    let finish: () => void = () => undefined;
    try {
      // The pool's turn first, then a global slot: a transfer waiting for its pool holds no slot.
      const turn = new Promise<void>((resolve) => {
        releaseTurn = resolve;
      });
      const before = this.poolTurns.get(key) ?? Promise.resolve();
      const mine = before.then(() => turn);
      this.poolTurns.set(key, mine);
      await abortable(before, signal);
      await abortable(this.takeSlot(), signal).then(() => {
        slot = true;
      });
      this.set(t, { state: 'planning' });
      plan = await planSend(spec, { maxOpBytes: DEFAULT_MAX_OP_BYTES, withMappings: spec.kind === 'offline', lockDir: this.o.lockDir, signal });
      checkPoolRule(c, plan);
      const reader = await openSourceReader(plan, { signal });
      try {
        this.set(t, { state: 'sending', totalBytes: plan.plan.totals.dataBytes });
        const client = await this.client(req.destination);
        const compress = req.options.noCompress !== true;
        // The daemon's default is what `send --to` does: zstd while it pays (sender/compress-decision.ts).
        const limit = req.options.bandwidthLimitBytesPerSecond ?? 0;
        const metrics = this.o.metrics;
        let sentInAttempt = 0;
        const r = await sendPlanOverGrpc(client, plan, reader, {
          target: req.destination.target,
          transferId: t.info.transferId,
          compress: compress ? 'zstd' : 'none', // not auto: see compressModeOf (cli/commands/send-grpc.ts)
          force: req.options.force === true,
          grow: req.options.grow === true,
          checksum: req.options.checksum as RecordChecksum | undefined, // checked by start()
          pool: this.pool(compress),
          maxAttempts: (req.options.maxRetries || 9) + 1,
          retryDelayMs: this.o.retryDelayMs,
          signal,
          bandwidth: limit > 0 ? new TokenBucket(limit, DEFAULT_MAX_OP_BYTES + 4096) : undefined,
          onProgress: (x) => {
            // payloadBytes counts from 0 again in each attempt.
            metrics?.sentBytes.inc(x.payloadBytes >= sentInAttempt ? x.payloadBytes - sentInAttempt : x.payloadBytes);
            sentInAttempt = x.payloadBytes;
            this.progress(t, x.resumedDataBytes + x.dataBytes);
          },
          onEvent: (e) => {
            if (e.type === 'checksum-fallback')
              this.o.log.warn(
                { transferId: t.info.transferId, refused: e.refused, using: e.using },
                'the receiver does not know the checksum (an older version): sending with sha256',
              );
            if (e.type === 'retry') metrics?.retries.inc();
            if (e.type === 'retry') this.set(t, { state: 'resuming', retries: t.info.retries + 1, errorMessage: e.error.message });
            // A resumed call clears the retry's error; the note of a daemon restart stays.
            else if (e.type === 'start') this.set(t, { state: 'sending', ...(t.info.state === 'resuming' ? { errorMessage: '' } : {}) });
          },
        });
        finish = () => {
          this.set(t, {
            state: 'done',
            doneBytes: t.info.totalBytes,
            bytesPerSecond: 0,
            etaSeconds: 0,
            digest: r.digest.toString('hex'),
            finishedMs: Date.now(),
          });
          this.o.log.info(
            {
              transferId: t.info.transferId,
              owner: t.owner,
              target: req.destination.target,
              bytes: r.dataBytes,
              seconds: r.seconds,
              digest: r.digest.toString('hex'),
              outcome: 'done',
            },
            'transfer done',
          );
          this.o.metrics?.transfers.inc({ outcome: 'done', code: '' });
        };
      } finally {
        await reader.close();
      }
    } catch (e) {
      const err = asThinshipError(signal.aborted ? signal.reason : e);
      if (signal.aborted) {
        // A cancel by a caller also ends the receiver-side transfer; the daemon stopping leaves it resumable.
        if (!this.closed) await this.abortOnReceiver(t, req.destination, err.message);
        finish = () => {
          this.set(t, { state: 'cancelled', errorMessage: err.message, bytesPerSecond: 0, etaSeconds: 0, finishedMs: Date.now() });
          this.o.log.info({ transferId: t.info.transferId, owner: t.owner, outcome: 'cancelled', reason: err.message }, 'transfer cancelled');
          this.o.metrics?.transfers.inc({ outcome: 'cancelled', code: '' });
        };
      } else {
        finish = () => {
          this.set(t, { state: 'failed', errorCode: err.code, errorMessage: err.message, bytesPerSecond: 0, etaSeconds: 0, finishedMs: Date.now() });
          this.o.log.warn({ transferId: t.info.transferId, owner: t.owner, outcome: 'failed', code: err.code, err: err.message }, 'transfer failed');
          this.o.metrics?.transfers.inc({ outcome: 'failed', code: err.code });
        };
      }
    } finally {
      await plan?.close().catch(() => undefined);
      if (slot) this.releaseSlot();
      releaseTurn();
      finish();
    }
  }

  private async abortOnReceiver(t: Transfer, d: DestinationRequest, reason: string): Promise<void> {
    try {
      const client = await this.client(d);
      await client.abortTransfer(t.info.transferId, reason.slice(0, 500));
    } catch (e) {
      // Never begun there (NOT_FOUND) is the common case of a cancel while queued or planning.
      const err = asThinshipError(e);
      if (err.code !== 'NOT_FOUND')
        this.o.log.warn({ transferId: t.info.transferId, code: err.code, err: err.message }, 'could not abort the transfer on the receiver');
    }
  }

  private client(d: DestinationRequest): Promise<ReceiverClient> {
    const key = `${d.receiverAddress}|${d.serverName ?? ''}`;
    let c = this.clients.get(key);
    if (!c) {
      c = ReceiverClient.connect({ address: d.receiverAddress, serverName: d.serverName || undefined, tls: this.o.receiverTls, insecure: this.o.insecure });
      c.catch(() => this.clients.delete(key));
      this.clients.set(key, c);
    }
    return c;
  }

  private pool(compress: boolean): CompressPool {
    let p = this.pools.get(compress);
    if (!p) {
      p = new CompressPool({ compress });
      this.pools.set(compress, p);
    }
    return p;
  }

  private async takeSlot(): Promise<void> {
    while (this.active >= this.o.maxActiveTransfers) await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    this.active++;
  }

  private releaseSlot(): void {
    this.active--;
    this.slotWaiters.shift()?.();
  }

  private forgetOld(): void {
    const now = Date.now();
    for (const [id, t] of this.transfers) {
      if (FINAL.has(t.info.state) && now - t.info.finishedMs > this.o.keepFinishedMs) {
        this.transfers.delete(id);
        void t.saving.then(() => this.o.store?.remove(id)).catch(() => undefined);
      }
    }
  }
}

/** Resolves when p does, or rejects when the signal aborts (p is left to settle on its own). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(asThinshipError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(asThinshipError(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(asThinshipError(e));
      },
    );
  });
}

function lvmName(s: string, what: string): { vg: string; lv: string } {
  const m = /^(?:\/dev\/)?([A-Za-z0-9+_.-]+)\/([A-Za-z0-9+_.-]+)$/.exec(s);
  if (!m) throw new ThinshipError('USAGE', `${what} "${s.slice(0, 300)}" is not an LVM name (vg/lv)`);
  return { vg: m[1]!, lv: m[2]! };
}

function devIdOf(s: string, what: string): number {
  if (!/^\d{1,9}$/.test(s)) throw new ThinshipError('USAGE', `${what} "${s.slice(0, 300)}" is not a thin device id`);
  return Number(s);
}

/** The source spec, after checking the caller may send it (LVM names against its rules; offline files by real path inside its directories). */
async function authorizeSource(c: Caller, s: SourceRequest): Promise<SourceSpec> {
  if (s.offlinePool) {
    const o = s.offlinePool;
    const reals: string[] = [];
    for (const [p, what] of [
      [o.metadataPath, 'metadata_path'],
      [o.dataPath, 'data_path'],
    ] as const) {
      if (!p.startsWith('/')) throw new ThinshipError('USAGE', `offline_pool.${what} must be an absolute path`);
      reals.push(
        await realpath(p).catch((e: NodeJS.ErrnoException) => {
          throw new ThinshipError(e.code === 'ENOENT' ? 'NOT_FOUND' : 'PERMISSION_DENIED', `offline_pool.${what} ${p}: ${e.code}`);
        }),
      );
    }
    if (!reals.every((r) => c.rules.some((x) => x.offlineDirectories.some((d) => isInside(r, d))))) {
      throw new ThinshipError('PERMISSION_DENIED', `identity ${c.owner} may not send from the offline pool ${o.metadataPath}`);
    }
    // The real paths are what is opened: a symlink swapped after this check cannot redirect the read.
    return {
      kind: 'offline',
      metadataPath: reals[0]!,
      dataPath: reals[1]!,
      snapDevId: devIdOf(s.snapshot, 'snapshot'),
      baseDevId: s.base ? devIdOf(s.base, 'base') : undefined,
      volumeSizeBytes: o.volumeSizeBytes || undefined,
    };
  }
  const names = [lvmName(s.snapshot, 'snapshot'), ...(s.base ? [lvmName(s.base, 'base')] : [])];
  for (const n of names) {
    if (!c.rules.some((r) => r.lvm.some((l) => l.vg === n.vg && globMatch(l.lv, n.lv))))
      throw new ThinshipError('PERMISSION_DENIED', `identity ${c.owner} may not send ${n.vg}/${n.lv}`);
  }
  return { kind: 'lvm', snap: `${names[0]!.vg}/${names[0]!.lv}`, base: names[1] ? `${names[1].vg}/${names[1].lv}` : undefined };
}

/** A rule naming a pool holds only for volumes in that pool (known once the plan resolved the LVs). */
function checkPoolRule(c: Caller, p: SendPlan): void {
  const snap = p.lvm?.snap;
  if (!snap) return;
  const ok = c.rules.some((r) => r.lvm.some((l) => l.vg === snap.vg && globMatch(l.lv, snap.lv) && (l.pool === undefined || l.pool === snap.pool.lv)));
  if (!ok) throw new ThinshipError('PERMISSION_DENIED', `identity ${c.owner} may not send from pool ${snap.vg}/${snap.pool.lv}`);
}

function authorizeDestination(c: Caller, d: DestinationRequest): void {
  if (!c.rules.some((r) => r.destinations.some((x) => x.receiver === d.receiverAddress && globMatch(x.target, d.target)))) {
    throw new ThinshipError('PERMISSION_DENIED', `identity ${c.owner} may not send to ${d.receiverAddress.slice(0, 300)} ${d.target.slice(0, 300)}`);
  }
}

/** Transfers with one key take turns: the VG for LVM (its pools' metadata snapshots), the metadata file for an offline pool. */
async function poolKey(spec: SourceSpec): Promise<string> {
  return spec.kind === 'lvm' ? `lvm:${spec.snap.split('/')[0]}` : `offline:${spec.metadataPath}`;
}
