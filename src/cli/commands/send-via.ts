/**
 * `thinship send [BASE] SNAP --via SENDER:PORT --to RECEIVER:PORT --target NAME`:
 * a running sender daemon (`thinship sender serve`) does the send
 * (StartTransfer, then WatchTransfer to the end); this command shows its
 * progress and ends as a direct `send --to` would: the same progress modes,
 * a summary line (or --json), and the exit code of the daemon's error code.
 *
 * SIGINT/SIGTERM cancel the transfer (CancelTransfer: the daemon releases the
 * metadata snapshot and its pool's turn and aborts the receiver-side transfer),
 * then exit 130/143: the command started the transfer, so it does not leave
 * it running behind the user's back. A transfer that must outlive the command
 * is started through the API; `--request-id ID` attaches again to one started
 * with that id (a repeat of StartTransfer is idempotent).
 *
 * Also `thinship transfer list|status|cancel --via SENDER:PORT`.
 */
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { ThinshipError, asThinshipError, type ErrorCode } from '../../errors.js';
import { SenderClient, type SenderTransferInfo, type StartTransferRequest } from '../../rpc/sender-client.js';
import { unixMsOfTimestamp } from '../../rpc/proto.js';
import { sourceSpecOf, parseBandwidthFlag, parseChecksumFlag, type SourceFlags } from '../source-args.js';
import { withStopSignals, InterruptedError } from '../signals.js';
import { ProgressLine, parseProgressMode } from '../progress.js';
import { formatBytes, formatRate } from '../format.js';
import { exitCodeOf } from '../exit-codes.js';
import { tlsFilesOf, type TlsFlags } from './send-grpc.js';

export interface ViaSendFlags extends SourceFlags, TlsFlags {
  via: string;
  to?: string;
  target?: string;
  requestId?: string;
  compress?: boolean;
  bwlimit?: string;
  retries?: string;
  progress?: string;
  json?: boolean;
  quiet?: boolean;
  receiverServerName?: string;
  checksum?: string;
  // Options of a direct send the sender service does not take (refused).
  force?: boolean;
  grow?: boolean;
  maxOpBytes?: string;
  metadataReader?: string;
  transferId?: string;
}

/** How long a watch broken by the daemon (restarting) is tried again, in total, before giving up. */
const REWATCH_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000];

/** StartTransfer's source: LVM names as given; an offline pool by absolute paths (the daemon resolves nothing against our directory). */
function sourceOf(names: string[], flags: SourceFlags): NonNullable<StartTransferRequest['source']> {
  const spec = sourceSpecOf(names, flags);
  if (spec.kind === 'lvm') {
    if (spec.allowLive) throw new ThinshipError('USAGE', '--allow-live is not an option of the sender service: send a snapshot');
    return { snapshot: spec.snap, base: spec.base ?? '' };
  }
  return {
    snapshot: String(spec.snapDevId),
    base: spec.baseDevId === undefined ? '' : String(spec.baseDevId),
    offlinePool: { metadataPath: resolve(spec.metadataPath), dataPath: resolve(spec.dataPath), volumeSizeBytes: spec.volumeSizeBytes ?? 0 },
  };
}

/** The error a failed or cancelled transfer ends the command with: its stable code gives the exit code, as for `send --to`. */
export function finalError(info: SenderTransferInfo, via: string): ThinshipError {
  if (info.state === 'STATE_CANCELLED') {
    return new ThinshipError(
      'TRANSFER_ABORTED',
      `transfer ${info.transferId} was cancelled on the sender daemon at ${via}: ${info.errorMessage || 'no reason given'}`,
      { details: { transferId: info.transferId } },
    );
  }
  const known = exitCodeOf(new ThinshipError(info.errorCode as ErrorCode, '')) !== 1 || info.errorCode === 'INTERNAL';
  const code: ErrorCode = known ? (info.errorCode as ErrorCode) : 'INTERNAL';
  const unknown = known ? '' : ` (error code ${info.errorCode || 'none'})`;
  return new ThinshipError(code, `${info.errorMessage || 'the transfer failed'}${unknown} [transfer ${info.transferId} on the sender daemon at ${via}]`, {
    details: { transferId: info.transferId, remoteCode: info.errorCode },
  });
}

export async function sendViaCommand(names: string[], flags: ViaSendFlags): Promise<void> {
  if (!flags.to || !flags.target)
    throw new ThinshipError('USAGE', '--via needs --to RECEIVER:PORT and --target NAME: where the sender daemon sends (as its config allows)');
  for (const [set, flag] of [
    [flags.maxOpBytes, '--max-op-bytes'],
    [flags.metadataReader, '--metadata-reader'],
    [flags.transferId, '--transfer-id (the daemon names transfers; --request-id ID makes a start repeatable)'],
  ] as const) {
    if (set !== undefined) throw new ThinshipError('USAGE', `${flag} is not an option of the sender service (--via); use a direct send --to for it`);
  }
  const source = sourceOf(names, flags);
  const bwlimit = parseBandwidthFlag(flags.bwlimit);
  const retries = flags.retries === undefined ? 0 : Number(flags.retries);
  // The service reads max_retries 0 as its default (9): zero retries cannot be asked for.
  if (flags.retries !== undefined && (!Number.isInteger(retries) || retries < 1 || retries > 1000))
    throw new ThinshipError('USAGE', `--retries "${flags.retries}" with --via: a whole number from 1 to 1000 (default 9)`);
  const requestId = flags.requestId ?? `cli-${randomUUID()}`;
  const progressMode = parseProgressMode(flags.progress);
  const what = `${source.base ? 'incremental' : 'full'} ${source.snapshot}${source.base ? ` from ${source.base}` : ''}`;
  const client = await SenderClient.connect({
    address: flags.via,
    tls: tlsFilesOf(flags),
    insecure: flags.insecure,
    allowInsecureRemote: flags.allowInsecureRemote,
    serverName: flags.serverName,
  });
  const t0 = performance.now();
  let transferId: string | undefined;
  const progress = new ProgressLine('send', undefined, progressMode === 'auto' && (flags.quiet || flags.json) ? 'none' : progressMode);
  let retriesSeen = 0;
  const onState = (info: SenderTransferInfo) => {
    if (info.totalBytes > 0) progress.setTotal(info.totalBytes);
    progress.update(info.doneBytes);
    if (info.retries > retriesSeen) {
      retriesSeen = info.retries;
      if (!flags.quiet && !flags.json) {
        progress.clear();
        process.stderr.write(`thinship send: ${info.errorMessage || 'the link to the receiver broke'}; the sender daemon resumes (retry ${info.retries})\n`);
      }
    }
  };
  let final: SenderTransferInfo;
  try {
    try {
      final = await withStopSignals(
        async (signal) => {
          const started = await client.start({
            requestId,
            source,
            destination: { receiverAddress: flags.to!, serverName: flags.receiverServerName ?? '', target: flags.target! },
            options: {
              noCompress: flags.compress === false,
              bandwidthLimitBytesPerSecond: bwlimit ?? 0,
              maxRetries: retries,
              force: flags.force === true,
              grow: flags.grow === true,
              checksum: parseChecksumFlag(flags.checksum) ?? '',
            },
          });
          transferId = started.transferId;
          return watchToEnd(client, started.transferId, onState, signal);
        },
        { signals: ['SIGINT', 'SIGTERM'] },
      );
    } catch (e) {
      if (e instanceof InterruptedError) throw await cancelOnInterrupt(client, e, transferId, flags.via);
      throw e;
    } finally {
      progress.finish();
    }
  } finally {
    client.close();
  }
  if (final.state !== 'STATE_DONE') throw finalError(final, flags.via);
  const seconds = (performance.now() - t0) / 1000;
  if (flags.json) {
    process.stdout.write(
      JSON.stringify({
        transferId: final.transferId,
        requestId: final.requestId,
        via: flags.via,
        mode: source.base ? 'incremental' : 'full',
        source: source.snapshot,
        base: source.base || null,
        to: flags.to,
        target: flags.target,
        retries: final.retries,
        dataBytes: final.totalBytes,
        seconds,
        digest: final.digest,
      }) + '\n',
    );
  } else if (!flags.quiet) {
    process.stdout.write(
      `thinship send: ${what} via ${flags.via} to ${flags.to} ${flags.target}: ${formatBytes(final.totalBytes)} of data, ${seconds.toFixed(2)} s (${formatRate(final.totalBytes, seconds)}); ` +
        `digest ${final.digest}; transfer ${final.transferId}${final.retries > 0 ? `; resumed ${final.retries} times` : ''}\n`,
    );
  }
}

/** Watches to the final state; a watch the daemon broke off (restarting: it resumes its transfers) is opened again, within REWATCH_DELAYS_MS. */
async function watchToEnd(
  client: SenderClient,
  transferId: string,
  onState: (i: SenderTransferInfo) => void,
  signal: AbortSignal,
): Promise<SenderTransferInfo> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.watch(transferId, onState, signal);
    } catch (e) {
      const err = asThinshipError(e);
      const delay = REWATCH_DELAYS_MS[attempt];
      if (signal.aborted || err.code !== 'UNAVAILABLE' || delay === undefined) throw e;
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            r();
          },
          { once: true },
        );
      });
      if (signal.aborted) throw signal.reason;
    }
  }
}

/** The signal's error, after cancelling the transfer this command started (or saying how to, if the daemon did not answer). */
async function cancelOnInterrupt(client: SenderClient, e: InterruptedError, transferId: string | undefined, via: string): Promise<InterruptedError> {
  if (transferId === undefined)
    return new InterruptedError(
      e.signalName,
      `interrupted by ${e.signalName} before the sender daemon at ${via} answered StartTransfer; if it started one, \`thinship transfer list --via ${via}\` shows it`,
      { cause: e },
    );
  try {
    const after = await client.cancel(transferId, `thinship send interrupted by ${e.signalName}`);
    const how =
      after.state === 'STATE_CANCELLED'
        ? 'cancelled it (nothing stays reserved; the receiver-side transfer was aborted)'
        : `found it already ${after.state.replace(/^STATE_/, '').toLowerCase()}`;
    return new InterruptedError(e.signalName, `interrupted by ${e.signalName}: the sender daemon at ${via} ${how}; transfer ${transferId}`, {
      details: { transferId },
      cause: e,
    });
  } catch (c) {
    return new InterruptedError(
      e.signalName,
      `interrupted by ${e.signalName}, and cancelling transfer ${transferId} failed (${asThinshipError(c).message}): it may still run; \`thinship transfer cancel ${transferId} --via ${via}\``,
      { details: { transferId }, cause: e },
    );
  }
}

// ---------------------------------------------------------------------------
// thinship transfer list|status|cancel --via

export interface ViaTransferFlags extends TlsFlags {
  via: string;
  reason?: string;
  json?: boolean;
}

const stateWord = (s: string) => s.replace(/^STATE_/, '').toLowerCase();
const timeOf = (t: SenderTransferInfo['createTime']) => (t ? new Date(unixMsOfTimestamp(t)).toISOString() : null);

/** A transfer as JSON: the state as a word, times in RFC 3339. */
export function senderInfoJson(i: SenderTransferInfo): Record<string, unknown> {
  return { ...i, state: stateWord(i.state), createTime: timeOf(i.createTime), finishTime: timeOf(i.finishTime) };
}

/** One row per transfer, columns aligned. */
export function senderTransferTable(infos: SenderTransferInfo[]): string {
  const rows = [['TRANSFER', 'STATE', 'DONE', 'TOTAL', 'RATE', 'RETRIES', 'SOURCE', 'DESTINATION', 'CREATED']];
  for (const i of infos) {
    const src = i.source ? `${i.source.base ? `${i.source.base}..` : ''}${i.source.snapshot}` : '';
    rows.push([
      i.transferId,
      stateWord(i.state) + (i.errorCode ? ` (${i.errorCode})` : ''),
      formatBytes(i.doneBytes),
      formatBytes(i.totalBytes),
      i.bytesPerSecond > 0 ? `${formatBytes(i.bytesPerSecond)}/s` : '-',
      String(i.retries),
      src,
      i.destination ? `${i.destination.receiverAddress} ${i.destination.target}` : '',
      (timeOf(i.createTime) ?? '').replace(/\.\d+Z$/, 'Z'),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ')).join('\n') + '\n';
}

/** `thinship transfer list|status ID|cancel ID --via HOST:PORT`: ListTransfers / GetTransfer / CancelTransfer on a sender daemon. */
export async function viaTransferCommand(action: string, transferId: string | undefined, flags: ViaTransferFlags): Promise<void> {
  if (action !== 'status' && action !== 'cancel' && action !== 'list')
    throw new ThinshipError('USAGE', `transfer --via: action must be "list", "status" or "cancel", not "${action}"`);
  if (action === 'list' ? transferId !== undefined : transferId === undefined)
    throw new ThinshipError('USAGE', action === 'list' ? 'transfer list takes no transfer id' : `transfer ${action} needs a transfer id`);
  const client = await SenderClient.connect({
    address: flags.via,
    tls: tlsFilesOf(flags),
    insecure: flags.insecure,
    allowInsecureRemote: flags.allowInsecureRemote,
    serverName: flags.serverName,
  });
  try {
    if (action === 'list') {
      const all = await client.list();
      process.stdout.write(
        flags.json
          ? JSON.stringify(all.map(senderInfoJson), null, 2) + '\n'
          : all.length === 0
            ? `no transfers of this identity on the sender daemon at ${flags.via}\n`
            : senderTransferTable(all),
      );
    } else if (action === 'status') {
      const i = await client.get(transferId!);
      process.stdout.write(
        flags.json ? JSON.stringify(senderInfoJson(i), null, 2) + '\n' : senderTransferTable([i]) + (i.errorMessage ? `${i.errorMessage}\n` : ''),
      );
    } else {
      const i = await client.cancel(transferId!, flags.reason ?? 'thinship transfer cancel');
      process.stdout.write(
        flags.json
          ? JSON.stringify(senderInfoJson(i), null, 2) + '\n'
          : i.state === 'STATE_CANCELLED'
            ? `cancelled transfer ${i.transferId} (the sender daemon released it and aborted it on the receiver)\n`
            : `transfer ${i.transferId} had already ended (${stateWord(i.state)}); nothing to cancel\n`,
      );
    }
  } finally {
    client.close();
  }
}
