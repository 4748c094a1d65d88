/**
 * The undo journal of an incremental applied in place (file systems without
 * reflinks): before each range of the target is overwritten, its old bytes
 * are appended here and made durable (fdatasync), so that the target can be
 * put back exactly as it was after an abort, a failure or a crash.
 *
 * File layout, beside the target (`.NAME.thinship-undo-OWNER`):
 *   header  "THINSHIP-UNDO1\n" + JSON line {owner, ino, dev, originalSizeBytes}
 *   entries [u32 kind][u64 offset][u64 length][32-byte sha256 of payload][payload]
 *           kind 1: old bytes of [offset, offset+length)
 *           kind 2: commit marker, payload = JSON TargetRecord (the data is final; finish the commit)
 *           kind 3: [offset, offset+length) held zeros, payload = u64 length (nothing else stored:
 *                   a full stream onto a blank device journals next to nothing)
 * Raw block devices keep theirs in the state directory (device-stage.ts).
 * It is read as a stream (an index of entries, then one payload at a time):
 * a journal may hold the old content of a whole volume.
 * A torn last entry (a crash while appending) fails its checksum: its range
 * was not written yet (the target is written only after the entry is durable),
 * so it is ignored.
 */
import { createHash } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { ThinshipError } from '../../errors.js';
import type { TargetRecord } from './record.js';

const MAGIC = 'THINSHIP-UNDO1\n';
const ENTRY_HEADER_BYTES = 4 + 8 + 8 + 32;
const KIND_OLD_BYTES = 1;
const KIND_COMMIT = 2;
const KIND_ZEROS = 3;
/** Payloads are read and hashed in pieces of this many bytes. */
const READ_PIECE_BYTES = 1024 * 1024;

export interface JournalHeader {
  owner: string;
  ino: string;
  dev: string;
  originalSizeBytes: number;
  /** The target held its record, undiverged, when the journal began: a rollback records it again (its stat moved). */
  restoreRecord?: boolean;
  /** A raw block device (journal in the state directory, device-stage.ts): the path it had and its identity. */
  device?: { path: string; identity: string; key: string };
}

/** One saved range: where its old bytes are in the journal, or that they were zeros. */
export interface JournalRange {
  offsetBytes: number;
  lengthBytes: number;
  /** The range held zeros: nothing was stored (kind 3). */
  zeros: boolean;
  /** Where its old bytes start in the journal file (kind 1). */
  payloadPos: number;
}

export interface JournalContents {
  header: JournalHeader;
  /** Old bytes in the order they were saved (roll back in reverse). */
  ranges: JournalRange[];
  /** Set when the apply had committed its data: the record to finish the commit with. */
  committed?: TargetRecord;
}

function sha(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

function entry(kind: number, offsetBytes: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(ENTRY_HEADER_BYTES);
  h.writeUInt32LE(kind, 0);
  h.writeBigUInt64LE(BigInt(offsetBytes), 4);
  h.writeBigUInt64LE(BigInt(payload.length), 12);
  sha(payload).copy(h, 20);
  return Buffer.concat([h, payload]);
}

export class UndoJournal {
  private constructor(
    readonly path: string,
    private fh: FileHandle,
    private endBytes: number,
    readonly header: JournalHeader,
  ) {}

  /** Creates a new journal (replacing none: O_EXCL) and makes its header durable. */
  static async create(path: string, header: JournalHeader, o: { createAt?: string } = {}): Promise<UndoJournal> {
    // createAt: the same file named through a directory descriptor (/proc/self/fd/N/NAME), race-free.
    const fh = await open(o.createAt ?? path, 'wx', 0o600);
    const head = Buffer.from(MAGIC + JSON.stringify(header) + '\n');
    await fh.write(head, 0, head.length, 0);
    await fh.sync();
    return new UndoJournal(path, fh, head.length, header);
  }

  /** Opens an existing journal to append to it (a resumed transfer continues its journal). */
  static async reopen(path: string): Promise<UndoJournal> {
    const c = await readJournal(path);
    const fh = await open(path, 'r+');
    // Cut a torn last entry so that appends follow the last good one.
    await fh.truncate(c.validBytes);
    return new UndoJournal(path, fh, c.validBytes, c.header);
  }

  /**
   * Saves the old bytes of a range durably, in one append: runs of 64 KiB
   * blocks that were zeros as their length only. Only then may the range be
   * written.
   */
  async saveOld(offsetBytes: number, old: Buffer): Promise<void> {
    const parts: Buffer[] = [];
    const B = ZEROS.length;
    let runStart = 0;
    let runZeros: boolean | undefined;
    const endRun = (to: number) => {
      if (runZeros === undefined || to === runStart) return;
      if (runZeros) {
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(to - runStart));
        parts.push(entry(KIND_ZEROS, offsetBytes + runStart, len));
      } else parts.push(entry(KIND_OLD_BYTES, offsetBytes + runStart, old.subarray(runStart, to)));
    };
    for (let p = 0; p < old.length; p += B) {
      const z = isZeros(old.subarray(p, Math.min(p + B, old.length)));
      if (z === runZeros) continue;
      endRun(p);
      runStart = p;
      runZeros = z;
    }
    endRun(old.length);
    if (parts.length > 0) await this.append(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  /** Marks the data final: from here recovery finishes the commit instead of rolling back. */
  async markCommitted(record: TargetRecord): Promise<void> {
    await this.append(entry(KIND_COMMIT, 0, Buffer.from(JSON.stringify(record))));
  }

  private async append(b: Buffer): Promise<void> {
    let done = 0;
    try {
      while (done < b.length) {
        const { bytesWritten } = await this.fh.write(b, done, b.length - done, this.endBytes + done);
        done += bytesWritten;
      }
      await this.fh.datasync();
    } catch (e) {
      // A full disk here is the common case: say which file (the target is untouched by this range).
      const errno = (e as { code?: string }).code;
      throw new ThinshipError(
        'IO_ERROR',
        `undo journal ${this.path}: saving old bytes before overwriting them failed at journal byte ${this.endBytes + done}: ${(e as Error).message}${errno === 'ENOSPC' ? ' (its file system is full: make room, or put the state directory elsewhere)' : ''}`,
        { details: { path: this.path, errno }, cause: e },
      );
    }
    this.endBytes += b.length;
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }

  async closeAndDelete(): Promise<void> {
    await this.close();
    await unlink(this.path);
  }
}

function isZeros(b: Buffer): boolean {
  for (let p = 0; p < b.length; p += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - p);
    if (!b.subarray(p, p + n).equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}
const ZEROS = Buffer.alloc(64 * 1024);

async function readExactly(fh: FileHandle, buf: Buffer, pos: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** The old bytes of range `r` of the journal open as `fh`. */
export async function readOldBytes(fh: FileHandle, r: JournalRange): Promise<Buffer> {
  const buf = Buffer.alloc(r.lengthBytes);
  if (r.zeros) return buf;
  const n = await readExactly(fh, buf, r.payloadPos);
  if (n !== r.lengthBytes)
    throw new ThinshipError('BAD_METADATA', `undo journal: the old bytes of [${r.offsetBytes}, +${r.lengthBytes}) at byte ${r.payloadPos} are cut short`);
  return buf;
}

/** Reads a journal's header and the index of its intact entries; validBytes is where the last intact entry ends. */
export async function readJournal(path: string): Promise<JournalContents & { validBytes: number }> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(size, 64 * 1024));
    await readExactly(fh, head, 0);
    if (head.subarray(0, MAGIC.length).toString('latin1') !== MAGIC)
      throw new ThinshipError('BAD_METADATA', `undo journal ${path}: not a thinship undo journal (bad magic)`);
    const nl = head.indexOf(0x0a, MAGIC.length);
    if (nl < 0) throw new ThinshipError('BAD_METADATA', `undo journal ${path}: its header is cut short`);
    let header: JournalHeader;
    try {
      header = JSON.parse(head.subarray(MAGIC.length, nl).toString('utf8')) as JournalHeader;
    } catch (e) {
      throw new ThinshipError('BAD_METADATA', `undo journal ${path}: its header is not JSON (${(e as Error).message})`);
    }
    const ranges: JournalRange[] = [];
    let committed: TargetRecord | undefined;
    let pos = nl + 1;
    const eh = Buffer.alloc(ENTRY_HEADER_BYTES);
    const piece = Buffer.alloc(READ_PIECE_BYTES);
    while (pos + ENTRY_HEADER_BYTES <= size) {
      await readExactly(fh, eh, pos);
      const kind = eh.readUInt32LE(0);
      const offsetBytes = Number(eh.readBigUInt64LE(4));
      const length = Number(eh.readBigUInt64LE(12));
      const payloadPos = pos + ENTRY_HEADER_BYTES;
      const end = payloadPos + length;
      if (end > size) break;
      // The payload's checksum, a piece at a time (it may be megabytes); small payloads are kept.
      const hash = createHash('sha256');
      const small = length <= 4096 ? Buffer.alloc(length) : undefined;
      for (let p = 0; p < length; p += READ_PIECE_BYTES) {
        const n = Math.min(READ_PIECE_BYTES, length - p);
        const got = await readExactly(fh, piece.subarray(0, n), payloadPos + p);
        hash.update(piece.subarray(0, got));
        if (small) piece.copy(small, p, 0, got);
      }
      if (!hash.digest().equals(eh.subarray(20, 52))) break;
      if (kind === KIND_OLD_BYTES) ranges.push({ offsetBytes, lengthBytes: length, zeros: false, payloadPos });
      else if (kind === KIND_ZEROS) ranges.push({ offsetBytes, lengthBytes: Number(small!.readBigUInt64LE(0)), zeros: true, payloadPos });
      else if (kind === KIND_COMMIT)
        committed = JSON.parse(
          small ? small.toString('utf8') : (await readOldBytes(fh, { offsetBytes: 0, lengthBytes: length, zeros: false, payloadPos })).toString('utf8'),
        ) as TargetRecord;
      else throw new ThinshipError('BAD_METADATA', `undo journal ${path}: unknown entry kind ${kind} at byte ${pos}`);
      pos = end;
    }
    return { header, ranges, committed, validBytes: pos };
  } finally {
    await fh.close();
  }
}
