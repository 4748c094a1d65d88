/**
 * A client of the sender daemon (proto/thinship/sender/v1/sender.proto), as
 * `thinship send --via` and `thinship transfer … --via` use it: start a
 * transfer, watch it to its final state, list, get and cancel transfers.
 * Errors come back as ThinshipErrors with the daemon's stable code (the rich
 * error model, rpc/status.ts), so the CLI maps them to the same exit codes as
 * a direct `send --to`.
 */
import * as grpc from '@grpc/grpc-js';
import { ThinshipError } from '../errors.js';
import { channelOf, type ConnectOptions } from './client.js';
import { senderProto } from './sender-server.js';
import { fromServiceError, type TransportFailure } from './status.js';

const UNARY_DEADLINE_MS = 30_000;

/** TransferInfo as proto-loader delivers it (camelCase, uint64 as Number, the state as its enum name). */
export interface SenderTransferInfo {
  transferId: string;
  requestId: string;
  source: { snapshot: string; base: string; offlinePool: { metadataPath: string; dataPath: string; volumeSizeBytes: number } | null } | null;
  destination: { receiverAddress: string; serverName: string; target: string } | null;
  /** STATE_QUEUED … STATE_CANCELLED */
  state: string;
  doneBytes: number;
  totalBytes: number;
  bytesPerSecond: number;
  etaSeconds: number;
  retries: number;
  errorCode: string;
  errorMessage: string;
  digest: string;
  createTime: { seconds: number; nanos: number } | null;
  finishTime: { seconds: number; nanos: number } | null;
}

const FINAL_STATES: ReadonlySet<string> = new Set(['STATE_DONE', 'STATE_FAILED', 'STATE_CANCELLED']);

export interface StartTransferRequest {
  requestId: string;
  source: { snapshot: string; base?: string; offlinePool?: { metadataPath: string; dataPath: string; volumeSizeBytes?: number } };
  destination: { receiverAddress: string; serverName?: string; target: string };
  options?: { noCompress?: boolean; bandwidthLimitBytesPerSecond?: number; maxRetries?: number; force?: boolean; grow?: boolean };
}

type RawClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

export class SenderClient {
  private constructor(
    readonly address: string,
    private readonly raw: RawClient,
  ) {}

  static async connect(o: ConnectOptions): Promise<SenderClient> {
    const { creds, options } = await channelOf(o, '--via');
    const { Client } = senderProto();
    return new SenderClient(o.address, new Client(o.address, creds, options) as unknown as RawClient);
  }

  /** The daemon's error as a ThinshipError; a daemon nobody answers for says so (not "receiver"). */
  private errorOf(e: unknown, rpc: string): ThinshipError {
    const err = fromServiceError(e, `${rpc} on the sender daemon at ${this.address}`);
    const t = err.details.transport as TransportFailure | undefined;
    if (t?.kind === 'connect')
      return new ThinshipError('UNAVAILABLE', `cannot connect to the sender daemon at ${this.address}: ${t.reason}`, {
        retryable: true,
        details: err.details,
        cause: err,
      });
    return err;
  }

  private unary<T>(rpc: string, req: Record<string, unknown>): Promise<T> {
    return new Promise((resolve, reject) => {
      (this.raw[rpc] as (r: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void).call(
        this.raw,
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + UNARY_DEADLINE_MS },
        (e, r) => (e ? reject(this.errorOf(e, rpc)) : resolve(r)),
      );
    });
  }

  async start(req: StartTransferRequest): Promise<SenderTransferInfo> {
    return (await this.unary<{ transfer: SenderTransferInfo }>('StartTransfer', req as unknown as Record<string, unknown>)).transfer;
  }

  async get(transferId: string): Promise<SenderTransferInfo> {
    return (await this.unary<{ transfer: SenderTransferInfo }>('GetTransfer', { transferId })).transfer;
  }

  async list(): Promise<SenderTransferInfo[]> {
    return (await this.unary<{ transfers: SenderTransferInfo[] }>('ListTransfers', {})).transfers;
  }

  async cancel(transferId: string, reason: string): Promise<SenderTransferInfo> {
    return (await this.unary<{ transfer: SenderTransferInfo }>('CancelTransfer', { transferId, reason })).transfer;
  }

  /**
   * WatchTransfer: calls `onState` with every state the daemon sends and
   * resolves with the final one. Rejects with the daemon's error, or when
   * `signal` aborts (the watch is cancelled; the transfer is not).
   */
  watch(transferId: string, onState: (info: SenderTransferInfo) => void, signal?: AbortSignal): Promise<SenderTransferInfo> {
    return new Promise((resolve, reject) => {
      const call = (this.raw.WatchTransfer as (r: unknown) => grpc.ClientReadableStream<{ transfer: SenderTransferInfo }>).call(this.raw, { transferId });
      let last: SenderTransferInfo | undefined;
      let settled = false;
      const settle = (f: () => void) => {
        if (!settled) {
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          f();
        }
      };
      const onAbort = () =>
        settle(() => {
          call.cancel();
          reject(signal!.reason as Error);
        });
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      call.on('data', (m: { transfer: SenderTransferInfo }) => {
        last = m.transfer;
        onState(m.transfer);
      });
      call.on('error', (e) => settle(() => reject(this.errorOf(e, 'WatchTransfer'))));
      call.on('end', () =>
        settle(() => {
          if (last && FINAL_STATES.has(last.state)) resolve(last);
          else
            reject(
              new ThinshipError('UNAVAILABLE', `the sender daemon at ${this.address} ended the watch of ${transferId} before its final state`, {
                retryable: true,
              }),
            );
        }),
      );
    });
  }

  close(): void {
    this.raw.close();
  }
}
