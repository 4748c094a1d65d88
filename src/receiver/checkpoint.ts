/**
 * Durable checkpoints of receiver transfers: one small JSON file per transfer
 * under <stateDir>/transfers/. A checkpoint is written only after the target
 * has been flushed (fdatasync), and atomically: write a temporary file, fsync
 * it, rename it over the old one, fsync the directory. After a crash the file
 * holds either the previous or the new checkpoint, never a mix, and every
 * record below its durable offset is on stable storage.
 */
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ThinshipError } from '../errors.js';

export const CHECKPOINT_FORMAT = 1;

/** 1 to 128 characters from [A-Za-z0-9._-], not starting with '.': safe as a file name. */
const TRANSFER_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

export function checkTransferId(id: string): string {
  if (typeof id !== 'string' || !TRANSFER_ID.test(id)) {
    throw new ThinshipError('BAD_STREAM', `transfer id ${JSON.stringify(String(id).slice(0, 140))} is not 1 to 128 characters from [A-Za-z0-9._-] (not starting with '.')`);
  }
  return id;
}

export type TransferMode = 'full' | 'incremental';

export interface TransferCheckpoint {
  format: typeof CHECKPOINT_FORMAT;
  transferId: string;
  status: 'in_progress' | 'complete';
  /** The client identity that began the transfer; only it may resume, query or abort it. */
  identity: string;
  /** The target as the sender named it, and the key of what it resolved to (real path, or lvm:vg/lv). */
  target: string;
  targetKey: string;
  /**
   * What the target was when the transfer began and completed (receiver/target.ts
   * targetIdentity: inode, device number or LV uuid). A target that no longer
   * matches holds nothing of this transfer. Absent in checkpoints of older versions.
   */
  targetIdentity?: string;
  mode: TransferMode;
  sourceId: string;
  baseId: string;
  volumeSizeBytes: number;
  blockSizeBytes: number;
  checksum: 'sha256' | 'none';
  /** Every record below this offset is applied and flushed. */
  durableOffsetBytes: number;
  /** Stream digest chain value after the last durable record (hex, 64 chars). */
  digestState: string;
  dataRecords: number;
  unmapRecords: number;
  dataBytes: number;
  unmapBytes: number;
  createdUnixMs: number;
  updatedUnixMs: number;
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Validates a parsed checkpoint file (written by us, but read back from disk: trust nothing). */
function parseCheckpoint(text: string, file: string): TransferCheckpoint {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ThinshipError('INTERNAL', `checkpoint ${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  const bad = (field: string) => new ThinshipError('INTERNAL', `checkpoint ${file}: field "${field}" is missing or invalid`);
  if (v.format !== CHECKPOINT_FORMAT) throw bad('format');
  for (const f of ['transferId', 'identity', 'target', 'targetKey', 'sourceId', 'baseId'] as const) if (typeof v[f] !== 'string') throw bad(f);
  for (const f of ['volumeSizeBytes', 'blockSizeBytes', 'durableOffsetBytes', 'dataRecords', 'unmapRecords', 'dataBytes', 'unmapBytes', 'createdUnixMs', 'updatedUnixMs'] as const) if (!isUint(v[f])) throw bad(f);
  if (v.status !== 'in_progress' && v.status !== 'complete') throw bad('status');
  if (v.mode !== 'full' && v.mode !== 'incremental') throw bad('mode');
  if (v.checksum !== 'sha256' && v.checksum !== 'none') throw bad('checksum');
  if (typeof v.digestState !== 'string' || !/^[0-9a-f]{64}$/.test(v.digestState)) throw bad('digestState');
  if (v.targetIdentity !== undefined && (typeof v.targetIdentity !== 'string' || !/^[ -~]{1,300}$/.test(v.targetIdentity))) throw bad('targetIdentity');
  checkTransferId(v.transferId as string);
  return v as unknown as TransferCheckpoint;
}

export class CheckpointStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'transfers');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(id: string): string {
    return join(this.dir, `${checkTransferId(id)}.json`);
  }

  async load(id: string): Promise<TransferCheckpoint | undefined> {
    const f = this.file(id);
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    return parseCheckpoint(text, f);
  }

  /** All checkpoints; files that are not checkpoints (temporaries of a crashed write) are removed. */
  async list(): Promise<TransferCheckpoint[]> {
    const out: TransferCheckpoint[] = [];
    for (const name of await readdir(this.dir)) {
      const f = join(this.dir, name);
      if (name.startsWith('.') && name.includes('.tmp-')) { await unlink(f).catch(() => undefined); continue; }
      if (!name.endsWith('.json')) continue;
      out.push(parseCheckpoint(await readFile(f, 'utf8'), f));
    }
    return out;
  }

  /** Atomically replaces the checkpoint of cp.transferId (see the file comment). */
  async save(cp: TransferCheckpoint): Promise<void> {
    const f = this.file(cp.transferId);
    const tmp = join(this.dir, `.${cp.transferId}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'w', 0o600).catch((e: NodeJS.ErrnoException) => {
      // Not recreated here: the checkpoints it held (every transfer's resume point) are gone, and the operator must know.
      if (e.code === 'ENOENT') throw new ThinshipError('IO_ERROR', `the receiver's state directory ${this.dir} is missing (removed while the receiver runs?): checkpoint of transfer ${cp.transferId} not written; restart the receiver (thinship serve) to recreate it`, { cause: e });
      throw e;
    });
    try {
      await fh.writeFile(JSON.stringify(cp, null, 1) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, f);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await this.syncDir();
  }

  async remove(id: string): Promise<void> {
    try {
      await unlink(this.file(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      return;
    }
    await this.syncDir();
  }

  /** fsync the directory so a rename or unlink survives a crash. */
  private async syncDir(): Promise<void> {
    const d = await open(this.dir, 'r');
    try { await d.sync(); } finally { await d.close(); }
  }
}
