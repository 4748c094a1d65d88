/**
 * `thinship send [BASE] SNAP --to HOST:PORT --target NAME`: send over gRPC
 * (mTLS by default), resuming on a broken connection. A progress line on a
 * terminal, then a summary: data sent, compression ratio, throughput, digest.
 * Running the same command again after a crash resumes the same transfer
 * (its id is derived from the target and the snapshots).
 */
import { join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { openSourceReader } from '../../sender/volume-reader.js';
import { ReceiverClient, sendPlanOverGrpc, defaultTransferId, type GrpcSendResult } from '../../rpc/client.js';
import { CompressPool } from '../../sender/compress-pool.js';
import type { CompressMode } from '../../sender/compress-decision.js';
import { MAX_WORKERS } from '../../stream/worker-pool.js';
import { checkZstdLevel } from '../../stream/zstd.js';
import type { TlsFiles } from '../../rpc/tls.js';
import { unixMsOfTimestamp } from '../../rpc/proto.js';
import { sourceSpecOf, parseByteCount, parseBandwidthFlag, parseChecksumFlag, type SourceFlags } from '../source-args.js';
import { planForCommand } from '../plan-options.js';
import { withStopSignals, InterruptedError } from '../signals.js';
import { TokenBucket } from '../../stream/bandwidth.js';
import { DEFAULT_MAX_OP_BYTES } from '../../thin/plan.js';
import { ProgressLine, parseProgressMode } from '../progress.js';
import { formatBytes, formatRate } from '../format.js';
import { logPhase } from '../../log.js';

export interface TlsFlags {
  ca?: string;
  cert?: string;
  key?: string;
  tlsDir?: string;
  serverName?: string;
  insecure?: boolean;
  allowInsecureRemote?: boolean;
}

export interface GrpcSendFlags extends SourceFlags, TlsFlags {
  progress?: string;
  bwlimit?: string;
  to: string;
  target?: string;
  transferId?: string;
  /** --compress MODE (zstd|none), or false from --no-compress. */
  compress?: string | boolean;
  zstdLevel?: string;
  checksum?: string;
  workers?: string;
  force?: boolean;
  grow?: boolean;
  retries?: string;
  maxOpBytes?: string;
  json?: boolean;
  quiet?: boolean;
  metadataReader?: string;
}

/** --tls-dir DIR means DIR/ca.crt, DIR/client.crt, DIR/client.key (what `thinship certs` writes); single flags override. */
export function tlsFilesOf(f: TlsFlags): TlsFiles | undefined {
  if (f.insecure) {
    if (f.ca || f.cert || f.key || f.tlsDir) throw new ThinshipError('USAGE', '--insecure cannot be combined with --ca, --cert, --key or --tls-dir');
    return undefined;
  }
  const ca = f.ca ?? (f.tlsDir ? join(f.tlsDir, 'ca.crt') : undefined);
  const cert = f.cert ?? (f.tlsDir ? join(f.tlsDir, 'client.crt') : undefined);
  const key = f.key ?? (f.tlsDir ? join(f.tlsDir, 'client.key') : undefined);
  if (!ca || !cert || !key)
    throw new ThinshipError(
      'USAGE',
      'mTLS needs the CA, a client certificate and its key: --tls-dir DIR (from `thinship certs`), or --ca, --cert and --key; --insecure only for a test on loopback',
    );
  return { ca, cert, key };
}

/**
 * --compress zstd|auto|none (default zstd; auto: zstd while it pays, sender/compress-decision.ts); --no-compress is none.
 * Not auto by default: its link meter times grpc-js write callbacks, which fire when a message is buffered into the
 * HTTP/2 window rather than when it leaves, so it overrates the link; measured, auto cost 26 % of loopback throughput
 * at level 1 (docs/benchmarks.md, issue 14 second pass).
 */
export function compressModeOf(flag: string | boolean | undefined): CompressMode {
  if (flag === undefined || flag === true) return 'zstd';
  if (flag === false) return 'none';
  if (flag === 'auto' || flag === 'zstd' || flag === 'none') return flag;
  throw new ThinshipError('USAGE', `--compress must be auto, zstd or none, not "${flag}"`);
}

/** --workers N: a whole number from 1 to MAX_WORKERS; undefined: the default (one per core). */
export function workerCountOf(flag: string | undefined): number | undefined {
  if (flag === undefined) return undefined;
  const n = Number(flag);
  if (!/^\d+$/.test(flag.trim()) || n < 1 || n > MAX_WORKERS)
    throw new ThinshipError('USAGE', `--workers must be a whole number from 1 to ${MAX_WORKERS}, not "${flag}"`);
  return n;
}

function summaryLine(r: GrpcSendResult, what: string, to: string, target: string): string {
  if (r.alreadyComplete) {
    return `thinship send: transfer ${r.transferId} of ${what} to ${to} ${target} is already complete (digest ${r.digest.toString('hex')}); nothing sent. Give --transfer-id NEW to send it again.`;
  }
  const ratio = r.payloadBytes > 0 ? (r.dataBytes / r.payloadBytes).toFixed(2) : '-';
  const resumed =
    r.startOffsets.length > 1 || (r.startOffsets[0] ?? 0) > 0
      ? `; resumed at ${r.startOffsets
          .filter((x, i) => i > 0 || x > 0)
          .map((x) => `offset ${x}`)
          .join(', ')} (${r.attempts} attempts)`
      : '';
  return (
    `thinship send: ${what} to ${to} ${target}: ${formatBytes(r.dataBytes)} of data (${r.chunks.zstd} zstd, ${r.chunks.raw} raw, ${r.chunks.zero} zero chunks), ` +
    `${formatBytes(r.payloadBytes)} on the wire (compression ratio ${ratio}), ${formatBytes(r.unmapBytes)} unmapped, ` +
    `${r.seconds.toFixed(2)} s (${formatRate(r.dataBytes, r.seconds)}); digest ${r.digest.toString('hex')}; transfer ${r.transferId}${resumed}`
  );
}

export async function sendGrpcCommand(names: string[], flags: GrpcSendFlags): Promise<void> {
  const target = flags.target;
  if (!target) throw new ThinshipError('USAGE', "--to needs --target NAME: the target as the receiver's configuration allows it (vg/lv, or an absolute path)");
  const tls = tlsFilesOf(flags);
  const retries = flags.retries === undefined ? 9 : Number(flags.retries);
  if (!Number.isInteger(retries) || retries < 0) throw new ThinshipError('USAGE', `--retries "${flags.retries}" must be a whole number`);
  const spec = sourceSpecOf(names, flags);
  const bwlimit = parseBandwidthFlag(flags.bwlimit);
  const maxOpBytes = flags.maxOpBytes === undefined ? DEFAULT_MAX_OP_BYTES : parseByteCount(flags.maxOpBytes, '--max-op-bytes');
  const compressMode = compressModeOf(flags.compress);
  const compress = compressMode !== 'none';
  const zstdLevel = flags.zstdLevel === undefined ? undefined : checkZstdLevel(Number(flags.zstdLevel));
  if (zstdLevel !== undefined && !compress) throw new ThinshipError('USAGE', '--zstd-level needs compression (not --compress none / --no-compress)');
  const workers = workerCountOf(flags.workers);
  const checksum = parseChecksumFlag(flags.checksum);
  logPhase('send: arguments parsed');
  const client = await ReceiverClient.connect({
    address: flags.to,
    tls,
    insecure: flags.insecure,
    allowInsecureRemote: flags.allowInsecureRemote,
    serverName: flags.serverName,
  });
  // Start-up overlaps planning: the TLS handshake and the compression workers'
  // boot (~0.1-0.2 s each) would otherwise come after it. That is most of a small
  // incremental's time.
  client.startConnecting();
  const pool = new CompressPool({ compress, zstdLevel, workers });
  try {
    const p = await planForCommand(spec, flags, { withMappings: spec.kind === 'offline' });
    logPhase('send: planned', { dataBytes: p.plan.totals.dataBytes });
    try {
      const what = `${p.mode} ${p.source.name}${p.base ? ` from ${p.base.name}` : ''}`;
      const reader = await openSourceReader(p);
      logPhase('send: source open');
      const progressMode = parseProgressMode(flags.progress);
      const progress = new ProgressLine('send', p.plan.totals.dataBytes, progressMode === 'auto' && (flags.quiet || flags.json) ? 'none' : progressMode);
      const transferId = flags.transferId ?? defaultTransferId(p, target, client.identity);
      // SIGINT/SIGTERM cancel the call (the receiver checkpoints what it applied) and say how to
      // resume; a second one of the same kind kills at once.
      let r: GrpcSendResult;
      try {
        r = await withStopSignals(
          (signal) =>
            sendPlanOverGrpc(client, p, reader, {
              target,
              transferId,
              compress: compressMode,
              checksum,
              pool,
              force: flags.force === true,
              grow: flags.grow === true,
              maxAttempts: retries + 1,
              signal,
              // One burst is one record's payload: the limit shapes the wire without splitting records.
              bandwidth: bwlimit === undefined ? undefined : new TokenBucket(bwlimit, maxOpBytes + 4096),
              onProgress: (x) => progress.update(x.resumedDataBytes + x.dataBytes),
              onEvent: (e) => {
                if (flags.quiet || flags.json) return;
                if (e.type === 'retry') {
                  progress.clear();
                  process.stderr.write(`thinship send: ${e.error.message}; retrying in ${(e.delayMs / 1000).toFixed(1)} s\n`);
                }
                if (e.type === 'checksum-fallback') {
                  progress.clear();
                  process.stderr.write(`thinship send: the receiver does not know checksum ${e.refused} (an older version); sending with ${e.using}\n`);
                }
                if (e.type === 'start' && e.resumeOffsetBytes > 0) {
                  progress.clear();
                  process.stderr.write(`thinship send: resuming transfer ${e.transferId} at volume offset ${e.resumeOffsetBytes}\n`);
                }
              },
            }),
          { signals: ['SIGINT', 'SIGTERM'], repeat: 'kill' },
        );
      } catch (e) {
        if (e instanceof InterruptedError) {
          const next = client.reached
            ? `transfer ${transferId} of ${what} to ${flags.to} ${flags.target} is resumable: run the same command again to resume it`
            : `the receiver at ${flags.to} had not answered yet; nothing was sent`;
          throw new InterruptedError(e.signalName, `interrupted by ${e.signalName}: ${next}`, { details: { transferId }, cause: e });
        }
        throw e;
      } finally {
        progress.finish();
        await reader.close();
      }
      logPhase('send: done');
      if (flags.json) {
        process.stdout.write(
          JSON.stringify({
            transferId: r.transferId,
            alreadyComplete: r.alreadyComplete,
            mode: p.mode,
            source: p.source.name,
            base: p.base?.name ?? null,
            to: flags.to,
            target: flags.target,
            attempts: r.attempts,
            startOffsets: r.startOffsets,
            dataBytes: r.dataBytes,
            payloadBytes: r.payloadBytes,
            unmapBytes: r.unmapBytes,
            chunks: r.chunks,
            plannedDataBytes: r.plannedDataBytes,
            seconds: r.seconds,
            digest: r.digest.toString('hex'),
            state: { status: r.state.status, durableOffsetBytes: r.state.durableOffsetBytes, dataBytes: r.state.dataBytes, unmapBytes: r.state.unmapBytes },
          }) + '\n',
        );
      } else if (!flags.quiet) {
        process.stdout.write(summaryLine(r, what, flags.to, target) + '\n');
      }
    } finally {
      await p.close();
    }
  } finally {
    client.close();
    await pool.close();
  }
}

export interface TransferFlags extends TlsFlags {
  to: string;
  reason?: string;
  json?: boolean;
}

type WireState = Awaited<ReturnType<ReceiverClient['listTransfers']>>[number];

/** A transfer state as JSON: the digest state in hex (as logs show digests), times in RFC 3339 (proto3's JSON mapping). */
function stateJson(s: WireState): Record<string, unknown> {
  const time = (t: typeof s.updateTime) => new Date(unixMsOfTimestamp(t)).toISOString();
  return { ...s, digestState: s.digestState.toString('hex'), updateTime: time(s.updateTime), expireTime: time(s.expireTime) };
}

const STATUS_WORDS: Record<string, string> = { TRANSFER_STATUS_IN_PROGRESS: 'in progress', TRANSFER_STATUS_COMPLETE: 'complete' };

/** One row per transfer, columns aligned: what an operator reads. */
export function transferTable(states: WireState[]): string {
  const rows = [['TRANSFER', 'STATUS', 'RUNNING', 'DURABLE', 'DATA', 'TARGET', 'UPDATED']];
  for (const s of states) {
    rows.push([
      s.transferId,
      STATUS_WORDS[s.status] ?? s.status,
      s.active ? 'yes' : 'no',
      formatBytes(s.durableOffsetBytes),
      formatBytes(s.dataBytes),
      s.target,
      new Date(unixMsOfTimestamp(s.updateTime)).toISOString().replace(/\.\d+Z$/, 'Z'),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ')).join('\n') + '\n';
}

/** `thinship transfer status|abort ID` and `thinship transfer list --to HOST:PORT`: GetTransferState / AbortTransfer / ListTransfers. */
export async function transferCommand(action: string, transferId: string | undefined, flags: TransferFlags): Promise<void> {
  if (action !== 'status' && action !== 'abort' && action !== 'list')
    throw new ThinshipError('USAGE', `transfer: action must be "list", "status" or "abort", not "${action}"`);
  if (action === 'list' ? transferId !== undefined : transferId === undefined)
    throw new ThinshipError('USAGE', action === 'list' ? 'transfer list takes no transfer id' : `transfer ${action} needs a transfer id`);
  const client = await ReceiverClient.connect({
    address: flags.to,
    tls: tlsFilesOf(flags),
    insecure: flags.insecure,
    allowInsecureRemote: flags.allowInsecureRemote,
    serverName: flags.serverName,
  });
  try {
    if (action === 'list') {
      const all = await client.listTransfers();
      process.stdout.write(
        flags.json
          ? JSON.stringify(all.map(stateJson), null, 2) + '\n'
          : all.length === 0
            ? `no transfers of this identity on ${flags.to}\n`
            : transferTable(all),
      );
    } else if (action === 'status') {
      const s = await client.getTransferState(transferId!);
      if (!s) throw new ThinshipError('NOT_FOUND', `${flags.to} has no transfer ${transferId}`);
      process.stdout.write(flags.json ? JSON.stringify(stateJson(s), null, 2) + '\n' : transferTable([s]));
    } else {
      const r = await client.abortTransfer(transferId!, flags.reason ?? 'thinship transfer abort');
      process.stdout.write(
        `aborted transfer ${r.transferId}${r.stoppedActiveStream ? ' (its running stream was stopped)' : ''}; the target is rolled back to what it held before it: its staging file, undo journal or staging LV is gone (it was durable up to offset ${r.durableOffsetBytes})\n`,
      );
    }
  } finally {
    client.close();
  }
}
