/**
 * What an LVM thin LV target holds, recorded in its own LV tags (and in the
 * tags of each received snapshot), so that it lives and dies with the LV and
 * never expires. One tag per field, `thinship.KEY:VALUE`:
 *
 *   thinship.v:1              format of these tags
 *   thinship.src:ID           source snapshot identity the stream named (sender: its LV uuid)
 *   thinship.base:ID          the base the increment that wrote it applied to (absent: a full stream)
 *   thinship.name:NAME        source snapshot name, when the stream said it (e.g. vg0/snap2)
 *   thinship.size:BYTES       volume size
 *   thinship.digest:HEX       stream digest (absent: the stream carried none)
 *   thinship.xfer:ID          'pipe' or the gRPC transfer id
 *   thinship.at:MS            commit time, Unix milliseconds
 *   thinship.snap:LV          on the target: its last received snapshot (divergence is measured against it)
 *   thinship.snapof:LV        on a received snapshot: the target it was taken of
 *   thinship.staging:LV       on a staging LV: the target it will become at commit
 *   thinship.owner:OWNER      on a staging LV of a gRPC transfer: grpc:IDENTITY/TRANSFER_ID (kept while it is resumable)
 *
 * LVM accepts only A-Z a-z 0-9 _ + . - / = ! : & # in a tag (lvm(8)), up to
 * 1024 characters: every other byte of a VALUE (UTF-8) is written `&HH`
 * (two upper-case hex digits), and `&` itself as `&26`.
 */
import { ThinshipError } from '../../errors.js';
import type { TargetRecord } from './record.js';

const TAG_PREFIX = 'thinship.';
/** lvm2's limit on one tag. */
const MAX_TAG_CHARS = 1024;
const PLAIN = /[A-Za-z0-9_+.\-/=!:#]/;

export function encodeTagValue(v: string): string {
  let out = '';
  for (const ch of v) {
    if (PLAIN.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `&${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function decodeTagValue(v: string, tag: string): string {
  if (!/^(?:[A-Za-z0-9_+.\-/=!:#]|&[0-9A-F]{2})*$/.test(v))
    throw new ThinshipError('BAD_METADATA', `LV tag "${tag}" is not a thinship tag value (only LVM tag characters and &HH escapes)`);
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '&') {
      bytes.push(parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(v.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

export function tag(key: string, value: string | number): string {
  const t = `${TAG_PREFIX}${key}:${encodeTagValue(String(value))}`;
  if (t.length > MAX_TAG_CHARS) throw new ThinshipError('USAGE', `the LV tag for ${key} would be ${t.length} characters, more than LVM's ${MAX_TAG_CHARS}`);
  return t;
}

/** thinship.KEY → decoded VALUE of the tags that are ours (others are ignored). */
export function parseTags(tags: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const t of tags) {
    if (!t.startsWith(TAG_PREFIX)) continue;
    const colon = t.indexOf(':');
    if (colon < 0) continue;
    m.set(t.slice(TAG_PREFIX.length, colon), decodeTagValue(t.slice(colon + 1), t));
  }
  return m;
}

/** The tags that record `r` (the role tags snap/snapof/staging are added by the caller). */
export function recordTags(r: TargetRecord): string[] {
  const tags = [tag('v', 1), tag('src', r.sourceId), tag('size', r.volumeSizeBytes), tag('xfer', r.transferId), tag('at', r.receivedUnixMs)];
  if (r.baseId) tags.push(tag('base', r.baseId));
  if (r.snapshotName) tags.push(tag('name', r.snapshotName));
  if (r.digest) tags.push(tag('digest', r.digest));
  return tags;
}

function uint(m: Map<string, string>, key: string, where: string): number {
  const v = m.get(key);
  if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new ThinshipError('BAD_METADATA', `${where}: tag ${TAG_PREFIX}${key} is ${v === undefined ? 'missing' : `"${v}", not a non-negative integer`}`);
  return Number(v);
}

/** The record in an LV's tags; undefined when it has none (no thinship.src). */
export function recordFromTags(tags: readonly string[], where: string): TargetRecord | undefined {
  const m = parseTags(tags);
  if (!m.has('src')) return undefined;
  if (m.get('v') !== '1')
    throw new ThinshipError('BAD_METADATA', `${where}: tag ${TAG_PREFIX}v is ${JSON.stringify(m.get('v'))}, not 1: a record of another thinship version`);
  return {
    format: 1,
    sourceId: m.get('src')!,
    baseId: m.get('base') ?? '',
    snapshotName: m.get('name'),
    volumeSizeBytes: uint(m, 'size', where),
    digest: m.get('digest') ?? '',
    transferId: m.get('xfer') ?? '',
    receivedUnixMs: uint(m, 'at', where),
  };
}

/** Our tags among `tags` (to remove before a new record is written). */
export function ourTags(tags: readonly string[]): string[] {
  return tags.filter((t) => t.startsWith(TAG_PREFIX));
}
