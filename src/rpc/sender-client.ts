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
import { newSenderClient, type SenderServiceClient, type SenderTransferInfo, type StartTransferRequest } from './proto.js';

export type { SenderTransferInfo, StartTransferRequest };
import { fromServiceError, type TransportFailure } from './status.js';

const UNARY_DEADLINE_MS = 30_000;

/** A response's `transfer` (a message field, so null when the daemon left it out: a broken daemon). */
function transferOf(r: { transfer: SenderTransferInfo | null }, rpc: string): SenderTransferInfo {
  if (!r.transfer) throw new ThinshipError('INTERNAL', `${rpc}: the sender daemon's response has no transfer`);
  return r.transfer;
}

const FINAL_STATES: ReadonlySet<string> = new Set(['STATE_DONE', 'STATE_FAILED', 'STATE_CANCELLED']);

export class SenderClient {
  private constructor(
    readonly address: string,
    private readonly raw: SenderServiceClient,
  ) {}

  static async connect(o: ConnectOptions): Promise<SenderClient> {
    const { creds, options } = await channelOf(o, '--via');
    return new SenderClient(o.address, newSenderClient(o.address, creds, options));
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

  /** One unary call with the deadline; `rpc` names it in errors. */
  private unary<T>(rpc: string, invoke: (md: grpc.Metadata, o: grpc.CallOptions, cb: grpc.requestCallback<T>) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      invoke(new grpc.Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (e, r) => (e || !r ? reject(this.errorOf(e, rpc)) : resolve(r)));
    });
  }

  async start(req: StartTransferRequest): Promise<SenderTransferInfo> {
    return transferOf(await this.unary('StartTransfer', (md, o, cb) => this.raw.StartTransfer(req, md, o, cb)), 'StartTransfer');
  }

  async get(transferId: string): Promise<SenderTransferInfo> {
    return transferOf(await this.unary('GetTransfer', (md, o, cb) => this.raw.GetTransfer({ transferId }, md, o, cb)), 'GetTransfer');
  }

  async list(): Promise<SenderTransferInfo[]> {
    return (await this.unary<{ transfers: SenderTransferInfo[] }>('ListTransfers', (md, o, cb) => this.raw.ListTransfers({}, md, o, cb))).transfers;
  }

  async cancel(transferId: string, reason: string): Promise<SenderTransferInfo> {
    return transferOf(await this.unary('CancelTransfer', (md, o, cb) => this.raw.CancelTransfer({ transferId, reason }, md, o, cb)), 'CancelTransfer');
  }

  /**
   * WatchTransfer: calls `onState` with every state the daemon sends and
   * resolves with the final one. Rejects with the daemon's error, or when
   * `signal` aborts (the watch is cancelled; the transfer is not).
   */
  watch(transferId: string, onState: (info: SenderTransferInfo) => void, signal?: AbortSignal): Promise<SenderTransferInfo> {
    return new Promise((resolve, reject) => {
      const call = this.raw.WatchTransfer({ transferId });
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
      call.on('data', (m: { transfer: SenderTransferInfo | null }) => {
        if (!m.transfer) return;
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
