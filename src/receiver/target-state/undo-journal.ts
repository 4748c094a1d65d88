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
 * A torn last entry (a crash while appending) fails its checksum: its range
 * was not written yet (the target is written only after the entry is durable),
 * so it is ignored.
 */
import { createHash } from 'node:crypto';
import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { ThinshipError } from '../../errors.js';
import type { TargetRecord } from './record.js';

const MAGIC = 'THINSHIP-UNDO1\n';
const ENTRY_HEADER_BYTES = 4 + 8 + 8 + 32;
const KIND_OLD_BYTES = 1;
const KIND_COMMIT = 2;

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

export interface JournalContents {
  header: JournalHeader;
  /** Old bytes in the order they were saved (roll back in reverse). */
  ranges: { offsetBytes: number; old: Buffer }[];
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
  private constructor(readonly path: string, private fh: FileHandle, private endBytes: number, readonly header: JournalHeader) {}

  /** Creates a new journal (replacing none: O_EXCL) and makes its header durable. */
  static async create(path: string, header: JournalHeader): Promise<UndoJournal> {
    const fh = await open(path, 'wx', 0o600);
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

  /** Saves the old bytes of a range durably; only then may the range be written. */
  async saveOld(offsetBytes: number, old: Buffer): Promise<void> {
    const e = entry(KIND_OLD_BYTES, offsetBytes, old);
    await this.append(e);
  }

  /** Marks the data final: from here recovery finishes the commit instead of rolling back. */
  async markCommitted(record: TargetRecord): Promise<void> {
    await this.append(entry(KIND_COMMIT, 0, Buffer.from(JSON.stringify(record))));
  }

  private async append(b: Buffer): Promise<void> {
    let done = 0;
    while (done < b.length) {
      const { bytesWritten } = await this.fh.write(b, done, b.length - done, this.endBytes + done);
      done += bytesWritten;
    }
    await this.fh.datasync();
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

/** Reads a journal; validBytes is where its last intact entry ends. */
export async function readJournal(path: string): Promise<JournalContents & { validBytes: number }> {
  const buf = await readFile(path);
  if (buf.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) throw new ThinshipError('BAD_METADATA', `undo journal ${path}: not a thinship undo journal (bad magic)`);
  const nl = buf.indexOf(0x0a, MAGIC.length);
  if (nl < 0) throw new ThinshipError('BAD_METADATA', `undo journal ${path}: its header is cut short`);
  let header: JournalHeader;
  try {
    header = JSON.parse(buf.subarray(MAGIC.length, nl).toString('utf8')) as JournalHeader;
  } catch (e) {
    throw new ThinshipError('BAD_METADATA', `undo journal ${path}: its header is not JSON (${(e as Error).message})`);
  }
  const ranges: JournalContents['ranges'] = [];
  let committed: TargetRecord | undefined;
  let pos = nl + 1;
  while (pos + ENTRY_HEADER_BYTES <= buf.length) {
    const kind = buf.readUInt32LE(pos);
    const offsetBytes = Number(buf.readBigUInt64LE(pos + 4));
    const length = Number(buf.readBigUInt64LE(pos + 12));
    const end = pos + ENTRY_HEADER_BYTES + length;
    if (end > buf.length) break;
    const payload = buf.subarray(pos + ENTRY_HEADER_BYTES, end);
    if (!sha(payload).equals(buf.subarray(pos + 20, pos + 52))) break;
    if (kind === KIND_OLD_BYTES) ranges.push({ offsetBytes, old: payload });
    else if (kind === KIND_COMMIT) committed = JSON.parse(payload.toString('utf8')) as TargetRecord;
    else throw new ThinshipError('BAD_METADATA', `undo journal ${path}: unknown entry kind ${kind} at byte ${pos}`);
    pos = end;
  }
  return { header, ranges, committed, validBytes: pos };
}
