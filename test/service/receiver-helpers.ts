/**
 * Pieces shared by the receiver state / limits tests: an in-process receiver
 * with a captured JSON log, raw ApplyStream calls, and sends of the demo pool.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { LOG_FORMAT } from '../../src/log.js';
import type * as grpc from '@grpc/grpc-js';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { startReceiver, type RunningReceiver } from '../../src/rpc/server.js';
import { ReceiverClient, sendPlanOverGrpc, type GrpcSendOptions, type GrpcSendResult } from '../../src/rpc/client.js';
import type { ApplyStreamRequest, ApplyStreamResponse__Output } from '../../src/rpc/proto.js';
import { planSend } from '../../src/thin/planner.js';
import { openSourceReader, type VolumeReader } from '../../src/sender/volume-reader.js';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import type { TlsFiles } from '../../src/rpc/tls.js';
import type { TestCerts } from './helpers.js';
import { rejects, waitFor } from './helpers.js';
export { rejects, waitFor };

export interface TestReceiver {
  rx: RunningReceiver;
  address: string;
  lines: Record<string, unknown>[];
  client(tls: TlsFiles): Promise<ReceiverClient>;
  close(): Promise<void>;
}

/** An in-process receiver on 127.0.0.1:0 whose log lines are kept in `lines`. */
export async function startTestReceiver(certs: TestCerts, cfg: Record<string, unknown>, cfgFile: string, listen = '127.0.0.1:0'): Promise<TestReceiver> {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'info', ...LOG_FORMAT }, sink);
  const config = await parseReceiverConfig({ tls: certs.server, ...cfg }, cfgFile);
  const rx = await startReceiver({ listen, config, log });
  const address = `127.0.0.1:${rx.port}`;
  const clients: ReceiverClient[] = [];
  return {
    rx,
    address,
    lines,
    client: async (tls) => {
      const c = await ReceiverClient.connect({ address, tls, serverName: 'localhost' });
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) c.close();
      await rx.close();
    },
  };
}

/** A raw ApplyStream call: write what you like. */
export function rawCall(client: ReceiverClient) {
  const { call, response } = client.applyStream();
  return { call, response, write: (m: ApplyStreamRequest | Record<string, unknown>) => call.write(m) };
}

export function beginMsg(transferId: string, target: string, over: Record<string, unknown> = {}): ApplyStreamRequest {
  return {
    kind: 'begin',
    begin: {
      protocolVersion: 1,
      transferId,
      target,
      mode: 'TRANSFER_MODE_FULL',
      volumeSizeBytes: 1024 * 1024,
      blockSizeBytes: 65536,
      sourceId: 'test-source',
      baseId: '',
      plannedDataBytes: 0,
      plannedUnmapBytes: 0,
      resumeOffsetBytes: 0,
      compression: 'COMPRESSION_ZSTD',
      checksum: 'CHECKSUM_ALGORITHM_SHA256',
      ...over,
    },
  };
}

export const sha = (b: Buffer) => createHash('sha256').update(b).digest();

export function dataMsg(offsetBytes: number, data: Buffer, over: Record<string, unknown> = {}): ApplyStreamRequest {
  return { kind: 'data', data: { offsetBytes, lengthBytes: data.length, payload: data, encoding: 'ENCODING_RAW', checksum: sha(data), ...over } };
}

export async function grpcError(response: Promise<ApplyStreamResponse__Output>): Promise<grpc.ServiceError> {
  try {
    await response;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  assert.fail('expected the call to fail');
}

/** Sends the demo pool's device `snap` (full) to `target`; `wrapReader` may stand between the sender and its source (gatedAt). */
export async function sendDemo(
  pool: DemoPool,
  client: ReceiverClient,
  target: string,
  snap: number,
  o: Partial<GrpcSendOptions> & { wrapReader?: (r: VolumeReader) => VolumeReader } = {},
): Promise<GrpcSendResult> {
  const p = await planSend(
    { kind: 'offline', metadataPath: pool.metadataPath, dataPath: pool.dataPath, snapDevId: snap, volumeSizeBytes: pool.volumeSizeBytes },
    { withMappings: true, maxOpBytes: 256 * 1024 },
  );
  try {
    const opened = await openSourceReader(p);
    const reader = o.wrapReader ? o.wrapReader(opened) : opened;
    try {
      return await sendPlanOverGrpc(client, p, reader, { target, maxAttempts: 4, retryDelayMs: 50, ...o });
    } finally {
      await reader.close();
    }
  } finally {
    await p.close();
  }
}

/** A source wrapper that holds every read reaching past `atBytes` until `release()`: the transfer stalls there, so a test can look at the receiver's state mid-transfer. */
export function gatedAt(atBytes: number): { wrap: (r: VolumeReader) => VolumeReader; release: () => void } {
  let release!: () => void;
  const open = new Promise<void>((res) => {
    release = res;
  });
  return {
    release,
    wrap: (r) => ({
      read: async (buf, off) => {
        if (off + buf.length > atBytes) await open;
        return r.read(buf, off);
      },
      close: () => r.close(),
    }),
  };
}

/** Like gatedAt, but counting the bytes read (so it stalls an incremental too, whatever offsets it reads): holds every read that starts once at least `bytes` have been read. */
export function gatedAfterReading(bytes: number): { wrap: (r: VolumeReader) => VolumeReader; release: () => void } {
  let release!: () => void;
  const open = new Promise<void>((res) => {
    release = res;
  });
  let readBytes = 0;
  return {
    release,
    wrap: (r) => ({
      read: async (buf, off) => {
        if (readBytes >= bytes) await open;
        readBytes += buf.length;
        return r.read(buf, off);
      },
      close: () => r.close(),
    }),
  };
}

/**
 * Sends up to `stopAfterBytes` of data, waits until the RECEIVER reports part of it durable
 * (its checkpoint, not the sender's own counters: under load the receiver may lag far behind what
 * was handed to gRPC), then cancels like a dying sender, leaving a resumable transfer.
 */
export async function interruptedSend(
  pool: DemoPool,
  client: ReceiverClient,
  target: string,
  snap: number,
  stopAfterBytes: number,
  transferId: string,
): Promise<void> {
  const ac = new AbortController();
  const gate = gatedAfterReading(stopAfterBytes);
  const sending = sendDemo(pool, client, target, snap, { transferId, signal: ac.signal, wrapReader: gate.wrap });
  sending.catch(() => undefined);
  try {
    await waitFor(async () => ((await client.getTransferState(transferId))?.durableOffsetBytes ?? 0) > 0, `a first checkpoint of ${transferId}`, 60_000);
    ac.abort();
  } finally {
    gate.release();
  }
  await rejects(sending, 'ABORTED');
}

export function stateDirOf(dir: string, name: string): string {
  return join(dir, `state-${name}`);
}
