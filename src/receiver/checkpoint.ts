/**
 * Durable checkpoints of receiver transfers: one small JSON file per transfer
 * under <stateDir>/transfers/. A checkpoint is written only after the target
 * has been flushed (fdatasync), and atomically: write a temporary file, fsync
 * it, rename it over the old one, fsync the directory. After a crash the file
 * holds either the previous or the new checkpoint, never a mix, and every
 * record below its durable offset is on stable storage.
 *
 * Integrity: every checkpoint carries an HMAC-SHA256 (`mac`) over a canonical
 * serialization of its fields, keyed with <stateDir>/checkpoint.key (32
 * random bytes, mode 0600, made at the first start). A file that does not
 * parse, fails its MAC, or sits under a name that is not its own is moved to
 * transfers/quarantine/ and never used: a changed durable offset or status
 * would make a sender skip data. The key stops edits by anyone who cannot
 * read it (and copies between state directories); it is no defence against
 * root on the receiver.
 *
 * Transfers are scoped by client identity: the file name is a hash of
 * (identity, transfer id), so two identities may use the same id and any
 * identity string is a safe file name.
 *
 * Format 1 (no MAC, named <transferId>.json) is migrated at the start that
 * creates the key, i.e. the first start of a version with checksums; once
 * the key exists a format-1 file is quarantined like any unverifiable one.
 */
import { mkdir, open, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ThinshipError } from '../errors.js';
import { isChecksumAlgorithm } from '../stream/integrity.js';
import type { ChecksumAlgorithm } from '../stream/messages.js';

export const CHECKPOINT_FORMAT = 2;
const LEGACY_FORMAT = 1;
const KEY_FILE = 'checkpoint.key';
const KEY_BYTES = 32;

/** 1 to 128 characters from [A-Za-z0-9._-], not starting with '.': safe as a file name. */
const TRANSFER_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Longest source_id / base_id (bytes of UTF-8): LV uuids and pool paths fit many times over. */
export const MAX_ID_FIELD_BYTES = 256;
/** Longest target name (bytes of UTF-8): PATH_MAX. */
export const MAX_TARGET_BYTES = 4096;
/** Longest identity name kept in a checkpoint (certificate CN / SAN values are far shorter). */
export const MAX_IDENTITY_BYTES = 1024;

export function checkTransferId(id: string): string {
  if (typeof id !== 'string' || !TRANSFER_ID.test(id)) {
    throw new ThinshipError(
      'BAD_STREAM',
      `transfer id ${JSON.stringify(String(id).slice(0, 140))} is not 1 to 128 characters from [A-Za-z0-9._-] (not starting with '.')`,
    );
  }
  return id;
}

export type TransferMode = 'full' | 'incremental';

/** The last DATA record below the durable offset: re-read and re-hashed before a resume. */
export interface LastDataRecord {
  offsetBytes: number;
  lengthBytes: number;
  /**
   * The checksum of the record's bytes (hex), by the transfer's algorithm
   * (`checksum`). Checkpoints written before BLAKE3 name it `sha256` (their
   * transfers are sha256); parseFields reads both.
   */
  checksum: string;
}

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
  checksum: ChecksumAlgorithm;
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
  /** Absent before the first DATA record with a checksum (and in migrated format-1 checkpoints). */
  lastData?: LastDataRecord;
}

/** The fields in MAC order (the canonical serialization is JSON of these, in this order). */
const FIELDS = [
  'format',
  'transferId',
  'status',
  'identity',
  'target',
  'targetKey',
  'targetIdentity',
  'mode',
  'sourceId',
  'baseId',
  'volumeSizeBytes',
  'blockSizeBytes',
  'checksum',
  'durableOffsetBytes',
  'digestState',
  'dataRecords',
  'unmapRecords',
  'dataBytes',
  'unmapBytes',
  'createdUnixMs',
  'updatedUnixMs',
  'lastData',
] as const;

function canonical(cp: TransferCheckpoint): string {
  const last = cp.lastData ? [cp.lastData.offsetBytes, cp.lastData.lengthBytes, cp.lastData.checksum] : null;
  return JSON.stringify(FIELDS.map((f) => (f === 'lastData' ? last : cp[f])));
}

/** The checkpoint file's name for (identity, transfer id): a hash, so any identity string is safe and ids are per identity. */
export function checkpointFileName(identity: string, transferId: string): string {
  return `${createHash('sha256')
    .update(JSON.stringify([identity, transferId]))
    .digest('hex')
    .slice(0, 40)}.json`;
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** A file that cannot be used: moved aside by list(). */
class Unusable extends Error {}

/** Validates a parsed checkpoint file (written by us, but read back from disk: trust nothing). */
function parseFields(v: Record<string, unknown>, file: string, format: number): TransferCheckpoint {
  const bad = (field: string) => new Unusable(`checkpoint ${file}: field "${field}" is missing or invalid`);
  if (v.format !== format) throw bad('format');
  for (const f of ['transferId', 'identity', 'target', 'targetKey', 'sourceId', 'baseId'] as const) if (typeof v[f] !== 'string') throw bad(f);
  for (const f of [
    'volumeSizeBytes',
    'blockSizeBytes',
    'durableOffsetBytes',
    'dataRecords',
    'unmapRecords',
    'dataBytes',
    'unmapBytes',
    'createdUnixMs',
    'updatedUnixMs',
  ] as const)
    if (!isUint(v[f])) throw bad(f);
  if (v.status !== 'in_progress' && v.status !== 'complete') throw bad('status');
  if (v.mode !== 'full' && v.mode !== 'incremental') throw bad('mode');
  if (!isChecksumAlgorithm(v.checksum)) throw bad('checksum');
  if (typeof v.digestState !== 'string' || !/^[0-9a-f]{64}$/.test(v.digestState)) throw bad('digestState');
  if (!TRANSFER_ID.test(v.transferId as string)) throw bad('transferId');
  if (utf8Bytes(v.sourceId as string) > MAX_ID_FIELD_BYTES) throw bad('sourceId');
  if (utf8Bytes(v.baseId as string) > MAX_ID_FIELD_BYTES) throw bad('baseId');
  if (utf8Bytes(v.target as string) > MAX_TARGET_BYTES || utf8Bytes(v.targetKey as string) > MAX_TARGET_BYTES + 16) throw bad('target');
  if (utf8Bytes(v.identity as string) > MAX_IDENTITY_BYTES) throw bad('identity');
  if ((v.durableOffsetBytes as number) > (v.volumeSizeBytes as number)) throw bad('durableOffsetBytes');
  if (v.targetIdentity !== undefined && (typeof v.targetIdentity !== 'string' || !/^[ -~]{1,300}$/.test(v.targetIdentity))) throw bad('targetIdentity');
  const out: Record<string, unknown> = {};
  for (const f of FIELDS) if (f !== 'lastData' && v[f] !== undefined) out[f] = v[f];
  out.format = CHECKPOINT_FORMAT;
  if (v.lastData !== undefined && v.lastData !== null) {
    const l = v.lastData as Record<string, unknown>;
    const sum = typeof l === 'object' ? (l.checksum ?? l.sha256) : undefined;
    if (
      typeof l !== 'object' ||
      !isUint(l.offsetBytes) ||
      !isUint(l.lengthBytes) ||
      l.lengthBytes === 0 ||
      typeof sum !== 'string' ||
      !/^[0-9a-f]{64}$/.test(sum) ||
      l.offsetBytes + l.lengthBytes > (v.durableOffsetBytes as number)
    )
      throw bad('lastData');
    out.lastData = { offsetBytes: l.offsetBytes, lengthBytes: l.lengthBytes, checksum: sum };
  }
  return out as unknown as TransferCheckpoint;
}

export interface ListedCheckpoints {
  checkpoints: TransferCheckpoint[];
  /** Files moved to transfers/quarantine/ (where to, and why). */
  quarantined: { file: string; movedTo: string; reason: string }[];
  /** Format-1 files rewritten as format 2 (their transfer ids). */
  migrated: string[];
}

export class CheckpointStore {
  readonly dir: string;
  readonly quarantineDir: string;
  private readonly keyFile: string;
  private key: Buffer | undefined;
  /** The key was made by this init(): the state directory predates checksummed checkpoints. */
  private keyIsNew = false;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'transfers');
    this.quarantineDir = join(this.dir, 'quarantine');
    this.keyFile = join(stateDir, KEY_FILE);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    let key: Buffer | undefined;
    try {
      key = await readFile(this.keyFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (key === undefined) {
      key = randomBytes(KEY_BYTES);
      // 'wx': two starts racing here cannot both make a key (the state-dir lock normally prevents that anyway).
      await writeFile(this.keyFile, key, { mode: 0o600, flag: 'wx' });
      const fh = await open(this.keyFile, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      this.keyIsNew = true;
    } else if (key.length !== KEY_BYTES) {
      throw new ThinshipError(
        'INTERNAL',
        `${this.keyFile} is ${key.length} bytes, not ${KEY_BYTES}: it keys every checkpoint's checksum; restore it, or move the state directory aside to start with no transfers`,
      );
    }
    this.key = key;
  }

  private mac(cp: TransferCheckpoint): string {
    if (!this.key) throw new ThinshipError('INTERNAL', 'checkpoint store used before init()');
    return createHmac('sha256', this.key).update(canonical(cp)).digest('hex');
  }

  private file(identity: string, id: string): string {
    return join(this.dir, checkpointFileName(identity, checkTransferId(id)));
  }

  /** Parses, checks the MAC and the file name; throws Unusable (or ThinshipError for I/O). */
  private parse(text: string, file: string, name: string): { cp: TransferCheckpoint; legacy: boolean } {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new Unusable(`checkpoint ${file} is not valid JSON: ${(e as Error).message}`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Unusable(`checkpoint ${file} is not a JSON object`);
    if (v.format === LEGACY_FORMAT) {
      if (!this.keyIsNew) throw new Unusable(`checkpoint ${file} is format 1 (no checksum), but this state directory already has checksummed checkpoints`);
      const cp = parseFields(v, file, LEGACY_FORMAT);
      if (name !== `${cp.transferId}.json`) throw new Unusable(`checkpoint ${file} is not named after its transfer id ${cp.transferId}`);
      return { cp, legacy: true };
    }
    const cp = parseFields(v, file, CHECKPOINT_FORMAT);
    const want = Buffer.from(this.mac(cp), 'hex');
    const got = typeof v.mac === 'string' && /^[0-9a-f]{64}$/.test(v.mac) ? Buffer.from(v.mac, 'hex') : Buffer.alloc(0);
    if (got.length !== want.length || !timingSafeEqual(got, want))
      throw new Unusable(`checkpoint ${file}: checksum (mac) mismatch: the file was changed or comes from another state directory`);
    if (name !== checkpointFileName(cp.identity, cp.transferId))
      throw new Unusable(`checkpoint ${file} is not named after its identity and transfer id (copied or renamed)`);
    return { cp, legacy: false };
  }

  async load(identity: string, id: string): Promise<TransferCheckpoint | undefined> {
    const f = this.file(identity, id);
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      return this.parse(text, f, checkpointFileName(identity, id)).cp;
    } catch (e) {
      if (e instanceof Unusable) throw new ThinshipError('INTERNAL', e.message);
      throw e;
    }
  }

  /**
   * All usable checkpoints, one file at a time: a file that cannot be used is
   * moved to quarantine/ (and reported), never fatal; temporaries of a crashed
   * write are removed; format-1 files are migrated (see the file comment).
   */
  async list(): Promise<ListedCheckpoints> {
    const out: ListedCheckpoints = { checkpoints: [], quarantined: [], migrated: [] };
    for (const ent of await readdir(this.dir, { withFileTypes: true })) {
      const name = ent.name;
      const f = join(this.dir, name);
      if (name.startsWith('.') && name.includes('.tmp-')) {
        await unlink(f).catch(() => undefined);
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        if (!ent.isFile()) throw new Unusable(`checkpoint ${f} is not a regular file`);
        const { cp, legacy } = this.parse(await readFile(f, 'utf8'), f, name);
        if (legacy) {
          await this.save(cp);
          await unlink(f);
          out.migrated.push(cp.transferId);
        }
        out.checkpoints.push(cp);
      } catch (e) {
        if (!(e instanceof Unusable)) throw e;
        out.quarantined.push({ file: f, movedTo: await this.quarantine(name), reason: e.message });
      }
    }
    if (out.migrated.length > 0 || out.quarantined.length > 0) await this.syncDir();
    return out;
  }

  private async quarantine(name: string): Promise<string> {
    await mkdir(this.quarantineDir, { recursive: true, mode: 0o700 });
    const to = join(this.quarantineDir, `${name}.${Date.now()}-${randomBytes(3).toString('hex')}`);
    await rename(join(this.dir, name), to);
    return to;
  }

  /** Atomically replaces the checkpoint of (cp.identity, cp.transferId) (see the file comment). */
  async save(cp: TransferCheckpoint): Promise<void> {
    const f = this.file(cp.identity, cp.transferId);
    const tmp = join(this.dir, `.${cp.transferId}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'w', 0o600).catch((e: NodeJS.ErrnoException) => {
      // Not recreated here: the checkpoints it held (every transfer's resume point) are gone, and the operator must know.
      if (e.code === 'ENOENT')
        throw new ThinshipError(
          'IO_ERROR',
          `the receiver's state directory ${this.dir} is missing (removed while the receiver runs?): checkpoint of transfer ${cp.transferId} not written; restart the receiver (thinship serve) to recreate it`,
          { cause: e },
        );
      throw e;
    });
    const body: Record<string, unknown> = {};
    for (const k of FIELDS) if (cp[k] !== undefined) body[k] = cp[k];
    body.format = CHECKPOINT_FORMAT;
    body.mac = this.mac({ ...cp, format: CHECKPOINT_FORMAT });
    try {
      await fh.writeFile(JSON.stringify(body, null, 1) + '\n');
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

  async remove(identity: string, id: string): Promise<void> {
    try {
      await unlink(this.file(identity, id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      return;
    }
    await this.syncDir();
  }

  /** fsync the directory so a rename or unlink survives a crash. */
  private async syncDir(): Promise<void> {
    const d = await open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
