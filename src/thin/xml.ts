/**
 * Strict, streaming parsers for the XML that thin_dump and thin_delta print.
 * This is the one file that knows element and attribute names; it turns them
 * into the typed model of model.ts.
 *
 * How it stays both strict and fast
 * ---------------------------------
 * fast-xml-parser (with its validator) parses every *shape* of line we meet:
 * element name, attributes by name, well-formedness, repeated or unquoted
 * attributes. Parsing every line with it runs at ~0.26 M lines/s on thin_dump
 * output (measured: 2 M `single_mapping` lines, batches of 4096 lines, 7.8 s),
 * half the speed at which thin_dump 0.9 itself prints (~0.5 M lines/s) and a
 * quarter of thin_delta's (~1.3 M lines/s); so it cannot keep pace.
 *
 * The tools print one element per line, each line of a kind looking the same
 * except for the numbers: `    <single_mapping origin_block="N" data_block="N" time="N"/>`.
 * So once fast-xml-parser has accepted a line, we keep its *skeleton*: the
 * line's bytes split around its quoted all-digit attribute values, plus which
 * attribute each of those values belongs to (learned by parsing a probe copy of
 * the line whose digits are replaced by markers). A later line that is exactly
 * the skeleton with other digit strings in the slots has, by construction, the
 * same fast-xml-parser result with other numbers, and is decoded by comparing
 * bytes (the whole parser reads a 2 M-line thin_dump file in 0.3-0.6 s, about
 * ten times faster than thin_dump prints it). Any line that matches no skeleton goes through
 * fast-xml-parser again, which either learns a new skeleton or reports the
 * error. All errors are reported from that slow path, so they are the same
 * whichever path a line would have taken.
 *
 * The accepted format is XML with one tag per line (what both the C++ 0.9 and
 * the Rust 1.x tools print). Text content, comments, declarations, two tags on
 * one line, unknown elements or attributes, missing required attributes,
 * values that are not non-negative safe integers, elements out of place,
 * unclosed elements at end of input and anything after the root are
 * BAD_METADATA errors naming the line.
 */
import type { Readable } from 'node:stream';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ThinshipError } from '../errors.js';
import type { DeltaKind, DeltaRange, Mapping, Superblock, ThinDevice } from './model.js';

/** Items handed to a sink per call (the last batch of a device or a document may be smaller). */
export const DEFAULT_BATCH_ITEMS = 4096;
/** A longer line is garbage: no tool prints one, and refusing it keeps memory bounded. */
export const MAX_LINE_BYTES = 64 * 1024;
/** Skeletons kept; the tools need about ten. Bounded so hostile input cannot grow memory. */
const MAX_SKELETONS = 64;

export interface DumpSink {
  /** Called once, before any device. */
  onSuperblock?(sb: Superblock): void;
  /** Called at each `<device>` start tag, before its mappings. */
  onDevice?(d: ThinDevice): void;
  /** Mappings of one device in increasing origin order; a batch never mixes devices. Awaited if it returns a promise. */
  onMappings(devId: number, batch: Mapping[]): void | Promise<void>;
}

export interface DumpResult {
  superblock: Superblock;
  /** In document order; empty when the superblock has no device (e.g. `thin_dump --dev-id` with an unknown id). */
  devices: ThinDevice[];
}

export interface DeltaSink {
  /** Called once, before any range. */
  onSuperblock?(sb: Superblock): void;
  /** Ranges in increasing, non-overlapping order (all kinds, `same` included). Awaited if it returns a promise. */
  onRanges(batch: DeltaRange[]): void | Promise<void>;
}

export interface DeltaResult {
  superblock: Superblock;
  leftDevId: number;
  rightDevId: number;
}

export interface ParseOptions {
  /** Maximum items per sink call (default DEFAULT_BATCH_ITEMS). */
  batchItems?: number;
  /** thin_dump --skip-mappings output: devices without mappings (a mapping is an error, mapped_blocks is not checked). */
  skipMappings?: boolean;
}

// ---------------------------------------------------------------------------
// Element schemas: the known attributes of every element, by name.

type Form = 'open' | 'empty' | 'close';

interface AttrSpec {
  name: string;
  kind: 'int' | 'string';
  required: boolean;
  /** Smallest accepted value of an int attribute (default 0). */
  min?: number;
}

interface ElementSpec {
  id: number;
  name: string;
  attrs: AttrSpec[];
  /** Attribute name -> index into `attrs` (and into the values array). */
  index: Map<string, number>;
}

const req = (name: string, min?: number): AttrSpec => ({ name, kind: 'int', required: true, min });
const opt = (name: string): AttrSpec => ({ name, kind: 'int', required: false });

const EL_SUPERBLOCK = 0, EL_DEVICE = 1, EL_SINGLE = 2, EL_RANGE_MAPPING = 3, EL_DIFF = 4,
  EL_SAME = 5, EL_DIFFERENT = 6, EL_LEFT_ONLY = 7, EL_RIGHT_ONLY = 8, EL_RANGE = 9, EL_DEF = 10, EL_REF = 11;

function spec(id: number, name: string, attrs: AttrSpec[]): ElementSpec {
  return { id, name, attrs, index: new Map(attrs.map((a, i) => [a.name, i])) };
}

// Field order here is the order of the values array handed to handlers.
const SUPERBLOCK = spec(EL_SUPERBLOCK, 'superblock', [
  { name: 'uuid', kind: 'string', required: true },
  req('time'), req('transaction'), req('data_block_size', 1), req('nr_data_blocks'),
  // thin_dump has version (and flags in newer tools); thin_delta has neither (1.x adds flags);
  // the Rust tools' model also has metadata_snap.
  opt('flags'), opt('version'), opt('metadata_snap'),
]);
const DEVICE = spec(EL_DEVICE, 'device', [req('dev_id'), req('mapped_blocks'), req('transaction'), req('creation_time'), req('snap_time')]);
const SINGLE = spec(EL_SINGLE, 'single_mapping', [req('origin_block'), req('data_block'), req('time')]);
const RANGE_MAPPING = spec(EL_RANGE_MAPPING, 'range_mapping', [req('origin_begin'), req('data_begin'), req('length', 1), req('time')]);
const DIFF = spec(EL_DIFF, 'diff', [req('left'), req('right')]);
// The four delta kinds: self-closing with begin/length (plain), or an attribute-less container of <range> (verbose).
const KIND_ATTRS = (): AttrSpec[] => [req('begin'), req('length', 1)];
const SAME = spec(EL_SAME, 'same', KIND_ATTRS());
const DIFFERENT = spec(EL_DIFFERENT, 'different', KIND_ATTRS());
const LEFT_ONLY = spec(EL_LEFT_ONLY, 'left_only', KIND_ATTRS());
const RIGHT_ONLY = spec(EL_RIGHT_ONLY, 'right_only', KIND_ATTRS());
// Which data-block attributes a verbose range needs depends on its container (checked by the delta handler).
const RANGE = spec(EL_RANGE, 'range', [req('begin'), req('length', 1), opt('data_begin'), opt('left_data_begin'), opt('right_data_begin')]);
// Rust thin_dump 1.x writes shared subtrees as <def name> ... </def> and <ref name/>; recognised only to refuse clearly.
const DEF = spec(EL_DEF, 'def', [{ name: 'name', kind: 'string', required: true }]);
const REF = spec(EL_REF, 'ref', [{ name: 'name', kind: 'string', required: true }]);

const SPECS = new Map<string, ElementSpec>(
  [SUPERBLOCK, DEVICE, SINGLE, RANGE_MAPPING, DIFF, SAME, DIFFERENT, LEFT_ONLY, RIGHT_ONLY, RANGE, DEF, REF].map((s) => [s.name, s]),
);
/** Start tags whose attributes differ from the self-closing form: the verbose delta containers have none. */
const OPEN_SPECS = new Map<string, ElementSpec>(
  [SAME, DIFFERENT, LEFT_ONLY, RIGHT_ONLY].map((s) => [s.name, spec(s.id, s.name, [])]),
);

const KIND_OF: Record<number, DeltaKind> = { [EL_SAME]: 'same', [EL_DIFFERENT]: 'different', [EL_LEFT_ONLY]: 'left_only', [EL_RIGHT_ONLY]: 'right_only' };

// ---------------------------------------------------------------------------
// Skeletons

interface Skeleton {
  spec: ElementSpec;
  form: Form;
  /** Literal byte segments; slots sit between consecutive segments. */
  segs: Uint8Array[];
  /** For each slot, the index of the attribute (field) it fills. */
  slotField: number[];
  /** For each slot, the smallest value the schema accepts (smaller values go to the slow path, which reports them). */
  slotMin: number[];
  /** Fields absent from this shape (optional attributes not given): set to NaN. */
  absent: number[];
}

function bytesEqual(b: Uint8Array, p: number, seg: Uint8Array): boolean {
  const n = seg.length;
  for (let i = 0; i < n; i++) if (b[p + i] !== seg[i]) return false;
  return true;
}

/** Decodes line b[start,end) against sk into vals; false if the line does not have this exact shape. */
function matchSkeleton(sk: Skeleton, b: Uint8Array, start: number, end: number, vals: number[]): boolean {
  const segs = sk.segs;
  const slots = sk.slotField;
  let p = start;
  for (let i = 0; i < slots.length; i++) {
    const seg = segs[i]!;
    if (p + seg.length > end || !bytesEqual(b, p, seg)) return false;
    p += seg.length;
    const d0 = p;
    let v = 0;
    while (p < end) {
      const c = b[p]! - 48;
      if (c < 0 || c > 9) break;
      v = v * 10 + c;
      p++;
    }
    const digits = p - d0;
    // Empty or possibly unsafe numbers go to the slow path, which reports them.
    if (digits === 0 || digits > 16 || (digits === 16 && v > Number.MAX_SAFE_INTEGER) || v < sk.slotMin[i]!) return false;
    vals[slots[i]!] = v;
  }
  const last = segs[slots.length]!;
  if (p + last.length !== end || !bytesEqual(b, p, last)) return false;
  for (const f of sk.absent) vals[f] = NaN;
  return true;
}

// ---------------------------------------------------------------------------
// The slow path: one line through fast-xml-parser.

const fxp = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  preserveOrder: true,
  allowBooleanAttributes: false,
  processEntities: true,
  trimValues: true,
});

interface ParsedTag {
  form: Form;
  name: string;
  /** Attribute values as text (absent for close tags). */
  attrs: Record<string, string>;
}

const CLOSE_TAG = /^<\/([A-Za-z_][A-Za-z0-9_.:-]*)\s*>$/;
const DIGIT_VALUE = /=(["'])(\d+)\1/g;

/** Where a document-level error happened; used in every message. */
class Where {
  constructor(readonly tool: string) {}
  fail(line: number, msg: string, element?: string): never {
    throw new ThinshipError('BAD_METADATA', `${this.tool} output, line ${line}: ${msg}`, { details: { line, element } });
  }
}

function parseTagText(text: string, line: number, where: Where): ParsedTag {
  const t = text.trim();
  if (!t.startsWith('<')) where.fail(line, `unexpected text ${JSON.stringify(clip(t))} (text content is not allowed)`);
  if (t.startsWith('</')) {
    const m = CLOSE_TAG.exec(t);
    if (!m) where.fail(line, `malformed closing tag ${JSON.stringify(clip(t))}`);
    return { form: 'close', name: m[1]!, attrs: {} };
  }
  if (t.startsWith('<!') || t.startsWith('<?')) where.fail(line, `unexpected ${t.startsWith('<!--') ? 'comment' : 'declaration'} ${JSON.stringify(clip(t))}`);
  if (!t.endsWith('>')) where.fail(line, `text after the tag in ${JSON.stringify(clip(t))} (one tag per line expected)`);
  if (t.indexOf('<', 1) !== -1) where.fail(line, `more than one tag on a line: ${JSON.stringify(clip(t))}`);
  const form: Form = t.endsWith('/>') ? 'empty' : 'open';
  let parsed: unknown;
  try {
    parsed = fxp.parse(t);
  } catch (e) {
    where.fail(line, `malformed tag ${JSON.stringify(clip(t))}: ${(e as Error).message}`);
  }
  const nodes = parsed as Array<Record<string, unknown>>;
  if (!Array.isArray(nodes) || nodes.length !== 1) where.fail(line, `expected exactly one element in ${JSON.stringify(clip(t))}`);
  const node = nodes[0]!;
  const name = Object.keys(node).find((k) => k !== ':@');
  if (name === undefined) where.fail(line, `no element in ${JSON.stringify(clip(t))}`);
  const children = node[name];
  if (Array.isArray(children) && children.length > 0) where.fail(line, `unexpected content inside <${name}>`, name);
  // The parser is lenient (it drops unquoted or valueless attributes, keeps the last of repeated ones);
  // its validator is not, so every new shape of line is validated too.
  const v = XMLValidator.validate(form === 'empty' ? t : `${t}</${name}>`, { allowBooleanAttributes: false });
  if (v !== true) where.fail(line, `malformed <${name}>: ${v.err.msg}`, name);
  const attrs = (node[':@'] ?? {}) as Record<string, string>;
  return { form, name, attrs };
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 120)}...` : s;
}

/** Checks a parsed tag's attributes against the element's schema; fills vals (ints) and returns string attributes. */
function checkAttrs(sp: ElementSpec, attrs: Record<string, string>, line: number, where: Where, vals: number[]): Record<string, string> {
  const strings: Record<string, string> = {};
  vals.length = sp.attrs.length;
  vals.fill(NaN);
  const seen = new Array<boolean>(sp.attrs.length).fill(false);
  for (const key of Object.keys(attrs)) {
    const idx = sp.index.get(key);
    if (idx === undefined) where.fail(line, `<${sp.name}> has unknown attribute '${key}'`, sp.name);
    const a = sp.attrs[idx]!;
    const raw = attrs[key]!;
    seen[idx] = true;
    if (a.kind === 'string') {
      strings[key] = raw;
      continue;
    }
    if (!/^\d+$/.test(raw)) where.fail(line, `<${sp.name}> attribute '${key}'="${clip(raw)}" is not a non-negative integer`, sp.name);
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) where.fail(line, `<${sp.name}> attribute '${key}'="${raw}" is too large (not a safe integer)`, sp.name);
    if (n < (a.min ?? 0)) where.fail(line, `<${sp.name}> attribute '${key}'="${raw}" must be at least ${a.min}`, sp.name);
    vals[idx] = n;
  }
  sp.attrs.forEach((a, i) => {
    if (a.required && !seen[i]) where.fail(line, `<${sp.name}> is missing required attribute '${a.name}'`, sp.name);
  });
  return strings;
}

/**
 * Learns the skeleton of a line fast-xml-parser accepted, or returns undefined
 * when its shape is not one we can decode by bytes (then such lines always take
 * the slow path, which is correct, only slower).
 */
function learnSkeleton(line: Uint8Array, text: string, tag: ParsedTag, sp: ElementSpec): Skeleton | undefined {
  if (tag.form === 'close') return { spec: sp, form: 'close', segs: [line.slice()], slotField: [], slotMin: [], absent: [] };
  // Only lines whose every attribute is an int written as plain digits (strings, such as uuid, stay on the slow path).
  const names = Object.keys(tag.attrs);
  if (names.some((n) => sp.attrs[sp.index.get(n)!]!.kind !== 'int')) return undefined;
  if (!/^[\x20-\x7e\t]*$/.test(text)) return undefined; // byte offsets below equal char offsets only for ASCII
  const cuts: Array<[number, number]> = [];
  let probe = '';
  let last = 0;
  for (const m of text.matchAll(DIGIT_VALUE)) {
    const from = m.index + 2;
    const to = from + m[2]!.length;
    probe += `${text.slice(last, from)}#${cuts.length}`;
    cuts.push([from, to]);
    last = to;
  }
  probe += text.slice(last);
  let parsed: ParsedTag;
  try {
    parsed = parseTagText(probe, 0, new Where('probe'));
  } catch {
    return undefined;
  }
  if (parsed.name !== tag.name || Object.keys(parsed.attrs).length !== names.length) return undefined;
  const slotField = new Array<number>(cuts.length).fill(-1);
  for (const [name, value] of Object.entries(parsed.attrs)) {
    const m = /^#(\d+)$/.exec(value);
    if (!m) return undefined; // an int attribute that is not a plain-digit slot: stay on the slow path
    const slot = Number(m[1]);
    if (slot >= cuts.length || slotField[slot] !== -1) return undefined;
    slotField[slot] = sp.index.get(name)!;
  }
  if (slotField.includes(-1)) return undefined; // a digit run that is not a whole attribute value
  const segs: Uint8Array[] = [];
  let from = 0;
  for (const [a, b] of cuts) {
    segs.push(line.slice(from, a));
    from = b;
  }
  segs.push(line.slice(from));
  const present = new Set(slotField);
  const absent = sp.attrs.map((_, i) => i).filter((i) => !present.has(i));
  const slotMin = slotField.map((f) => sp.attrs[f]!.min ?? 0);
  return { spec: sp, form: tag.form, segs, slotField, slotMin, absent };
}

// ---------------------------------------------------------------------------
// The line reader shared by both documents.

abstract class LineParser {
  protected readonly where: Where;
  protected lineNo = 0;
  /** Set by handlers when a batch is ready; the reader then awaits flush() before the next line. */
  protected flushWanted = false;
  protected readonly batchItems: number;
  private readonly skeletons: Skeleton[] = [];
  private lastSkeleton: Skeleton | undefined;
  private nextEvict = 0;
  private readonly vals: number[] = [];

  constructor(tool: string, opts: ParseOptions) {
    this.where = new Where(tool);
    const n = opts.batchItems ?? DEFAULT_BATCH_ITEMS;
    if (!Number.isSafeInteger(n) || n < 1) throw new ThinshipError('INTERNAL', `batchItems must be a positive integer, got ${n}`);
    this.batchItems = n;
  }

  /** One tag. vals holds the element's int attributes in schema order (NaN when absent). */
  protected abstract tag(sp: ElementSpec, form: Form, vals: number[], strings: Record<string, string> | undefined): void;
  protected abstract flush(): Promise<void> | void;
  protected abstract atEnd(): void;

  protected fail(msg: string, element?: string): never {
    this.where.fail(this.lineNo, msg, element);
  }

  async run(input: Readable): Promise<void> {
    let carry: Buffer | undefined;
    for await (const chunk of input as AsyncIterable<Buffer | string>) {
      const b: Buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      let p = 0;
      if (carry !== undefined) {
        const nl = b.indexOf(10);
        if (nl < 0) {
          carry = Buffer.concat([carry, b]);
          this.checkCarry(carry);
          continue;
        }
        // The line split across chunks: joined once, then the rest of the chunk is read in place.
        const joined = Buffer.concat([carry, b.subarray(0, nl)]);
        carry = undefined;
        this.line(joined, 0, joined.length);
        if (this.flushWanted) await this.doFlush();
        p = nl + 1;
      }
      for (;;) {
        const nl = b.indexOf(10, p);
        if (nl < 0) break;
        this.line(b, p, nl);
        if (this.flushWanted) await this.doFlush();
        p = nl + 1;
      }
      if (p < b.length) {
        carry = Buffer.from(b.subarray(p)); // a copy: the chunk itself is not kept
        this.checkCarry(carry);
      }
    }
    if (carry !== undefined && carry.length > 0) {
      this.line(carry, 0, carry.length);
      if (this.flushWanted) await this.doFlush();
    }
    this.lineNo++;
    this.atEnd();
    await this.doFlush();
  }

  private checkCarry(carry: Buffer): void {
    if (carry.length > MAX_LINE_BYTES) this.where.fail(this.lineNo + 1, `line longer than ${MAX_LINE_BYTES} bytes`);
  }

  private async doFlush(): Promise<void> {
    this.flushWanted = false;
    const r = this.flush();
    if (r !== undefined) await r;
  }

  private line(b: Buffer, start: number, end: number): void {
    this.lineNo++;
    const vals = this.vals;
    const last = this.lastSkeleton;
    if (last !== undefined && matchSkeleton(last, b, start, end, vals)) {
      this.tag(last.spec, last.form, vals, undefined);
      return;
    }
    for (const sk of this.skeletons) {
      if (sk !== last && matchSkeleton(sk, b, start, end, vals)) {
        this.lastSkeleton = sk;
        this.tag(sk.spec, sk.form, vals, undefined);
        return;
      }
    }
    this.slowLine(b.subarray(start, end));
  }

  private slowLine(bytes: Uint8Array): void {
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
    if (text.trim() === '') return; // whitespace between elements is not content
    const tag = parseTagText(text, this.lineNo, this.where);
    const sp = (tag.form === 'open' ? OPEN_SPECS.get(tag.name) : undefined) ?? SPECS.get(tag.name);
    if (sp === undefined) this.fail(`unknown element <${tag.name}>`, tag.name);
    const vals = this.vals;
    let strings: Record<string, string> | undefined;
    if (tag.form === 'close') {
      vals.length = 0;
    } else {
      strings = checkAttrs(sp, tag.attrs, this.lineNo, this.where, vals);
    }
    const sk = learnSkeleton(bytes, text, tag, sp);
    if (sk !== undefined) {
      if (this.skeletons.length < MAX_SKELETONS) this.skeletons.push(sk);
      else this.skeletons[this.nextEvict++ % MAX_SKELETONS] = sk;
      this.lastSkeleton = sk;
    }
    this.tag(sp, tag.form, vals, strings);
  }

  protected superblockOf(vals: number[], strings: Record<string, string> | undefined): Superblock {
    const sb: Superblock = {
      uuid: strings?.uuid ?? '',
      time: vals[1]!,
      transaction: vals[2]!,
      dataBlockSizeSectors: vals[3]!,
      nrDataBlocks: vals[4]!,
    };
    if (!Number.isNaN(vals[5])) sb.flags = vals[5]!;
    if (!Number.isNaN(vals[6])) sb.version = vals[6]!;
    return sb;
  }
}

// ---------------------------------------------------------------------------
// thin_dump

const D_BEFORE = 0, D_SUPERBLOCK = 1, D_DEVICE = 2, D_AFTER = 3;

class DumpParser extends LineParser {
  private state = D_BEFORE;
  superblock: Superblock | undefined;
  private superblockLine = 0;
  readonly devices: ThinDevice[] = [];
  private readonly devIds = new Set<number>();
  private device: ThinDevice | undefined;
  private deviceLine = 0;
  private deviceBlocks = 0;
  private nextOrigin = 0;
  private batch: Mapping[] = [];
  private batchDevId = -1;

  private readonly skipMappings: boolean;

  constructor(private readonly sink: DumpSink, opts: ParseOptions) {
    super('thin_dump', opts);
    this.skipMappings = opts.skipMappings === true;
  }

  protected tag(sp: ElementSpec, form: Form, vals: number[], strings: Record<string, string> | undefined): void {
    if (this.state === D_AFTER) this.fail(`unexpected <${form === 'close' ? '/' : ''}${sp.name}> after </superblock>`, sp.name);
    const id = sp.id;
    if (id === EL_SINGLE || id === EL_RANGE_MAPPING) {
      if (this.state !== D_DEVICE) this.fail(`<${sp.name}> outside a <device>`, sp.name);
      if (this.skipMappings) this.fail(`<${sp.name}> in output that should have no mappings (--skip-mappings)`, sp.name);
      if (form !== 'empty') this.fail(`<${sp.name}> must be a self-closing element`, sp.name);
      const single = id === EL_SINGLE;
      const originBlock = vals[0]!;
      const lengthBlocks = single ? 1 : vals[2]!;
      if (originBlock < this.nextOrigin) {
        this.fail(`<${sp.name}> at origin block ${originBlock} is out of order or overlaps the previous mapping (which ended at block ${this.nextOrigin})`, sp.name);
      }
      const end = originBlock + lengthBlocks;
      if (!Number.isSafeInteger(end)) this.fail(`<${sp.name}> ends beyond the largest safe block number`, sp.name);
      this.nextOrigin = end;
      this.deviceBlocks += lengthBlocks;
      const b = this.batch;
      b.push({ originBlock, dataBlock: vals[1]!, lengthBlocks, time: single ? vals[2]! : vals[3]! });
      if (b.length >= this.batchItems) this.flushWanted = true;
      return;
    }
    if (id === EL_DEVICE) {
      if (form === 'close') {
        if (this.state !== D_DEVICE) this.fail('</device> without an open <device>', sp.name);
        this.endDevice();
        this.state = D_SUPERBLOCK;
        return;
      }
      if (this.state === D_DEVICE) this.fail(`<device> inside <device> (opened at line ${this.deviceLine})`, sp.name);
      if (this.state !== D_SUPERBLOCK) this.fail('<device> outside <superblock>', sp.name);
      const d: ThinDevice = { devId: vals[0]!, mappedBlocks: vals[1]!, transaction: vals[2]!, creationTime: vals[3]!, snapTime: vals[4]! };
      if (this.devIds.has(d.devId)) this.fail(`device ${d.devId} appears twice`, sp.name);
      this.devIds.add(d.devId);
      this.devices.push(d);
      this.sink.onDevice?.(d);
      this.device = d;
      this.deviceLine = this.lineNo;
      this.deviceBlocks = 0;
      this.nextOrigin = 0;
      this.batchDevId = d.devId;
      if (form === 'empty') this.endDevice();
      else this.state = D_DEVICE;
      return;
    }
    if (id === EL_SUPERBLOCK) {
      if (form === 'close') {
        if (this.state === D_DEVICE) this.fail(`</superblock> while <device> (opened at line ${this.deviceLine}) is open`, sp.name);
        if (this.state !== D_SUPERBLOCK) this.fail('</superblock> without an open <superblock>', sp.name);
        this.state = D_AFTER;
        return;
      }
      if (this.state !== D_BEFORE) this.fail(`<superblock> inside <superblock> (opened at line ${this.superblockLine})`, sp.name);
      this.superblock = this.superblockOf(vals, strings);
      this.superblockLine = this.lineNo;
      this.sink.onSuperblock?.(this.superblock);
      this.state = form === 'empty' ? D_AFTER : D_SUPERBLOCK;
      return;
    }
    if (id === EL_DEF || id === EL_REF) {
      this.fail(`<${sp.name}> (a shared subtree, written by thin-provisioning-tools 1.x for whole-pool dumps) is not supported: dump one device with --dev-id`, sp.name);
    }
    this.fail(`unexpected element <${form === 'close' ? '/' : ''}${sp.name}> in thin_dump output`, sp.name);
  }

  private endDevice(): void {
    const d = this.device!;
    if (this.deviceBlocks !== d.mappedBlocks && !this.skipMappings) {
      this.fail(`device ${d.devId} (line ${this.deviceLine}) says mapped_blocks="${d.mappedBlocks}" but its mappings cover ${this.deviceBlocks} blocks`, 'device');
    }
    this.device = undefined;
    this.flushWanted = true; // a batch never mixes devices
  }

  protected flush(): Promise<void> | void {
    if (this.batch.length === 0) return;
    const b = this.batch;
    this.batch = [];
    const r = this.sink.onMappings(this.batchDevId, b);
    return r === undefined ? undefined : r;
  }

  protected atEnd(): void {
    if (this.state === D_BEFORE) this.fail('no <superblock> in thin_dump output (empty or truncated input)');
    if (this.state === D_DEVICE) this.fail(`input ended inside <device> (opened at line ${this.deviceLine}): truncated thin_dump output`, 'device');
    if (this.state === D_SUPERBLOCK) this.fail(`input ended before </superblock> (opened at line ${this.superblockLine}): truncated thin_dump output`, 'superblock');
  }
}

/**
 * Parses thin_dump's XML as it arrives, handing mappings to the sink in batches
 * (awaited when the sink returns a promise, which pauses the input). Memory is
 * constant whatever the size of the dump. Throws ThinshipError BAD_METADATA on
 * anything malformed or out of place.
 */
export async function parseThinDump(input: Readable, sink: DumpSink, opts: ParseOptions = {}): Promise<DumpResult> {
  const p = new DumpParser(sink, opts);
  await p.run(input);
  return { superblock: p.superblock!, devices: p.devices };
}

// ---------------------------------------------------------------------------
// thin_delta

const X_BEFORE = 0, X_SUPERBLOCK = 1, X_DIFF = 2, X_KIND = 3, X_AFTER_DIFF = 4, X_AFTER = 5;

class DeltaParser extends LineParser {
  private state = X_BEFORE;
  superblock: Superblock | undefined;
  leftDevId = -1;
  rightDevId = -1;
  private superblockLine = 0;
  private diffLine = 0;
  private container: ElementSpec | undefined;
  private containerLine = 0;
  private nextBlock = 0;
  private batch: DeltaRange[] = [];

  constructor(private readonly sink: DeltaSink, opts: ParseOptions) {
    super('thin_delta', opts);
  }

  private push(kind: DeltaKind, sp: ElementSpec, beginBlock: number, lengthBlocks: number): void {
    if (beginBlock < this.nextBlock) {
      this.fail(`<${sp.name}> at block ${beginBlock} is out of order or overlaps the previous range (which ended at block ${this.nextBlock})`, sp.name);
    }
    const end = beginBlock + lengthBlocks;
    if (!Number.isSafeInteger(end)) this.fail(`<${sp.name}> ends beyond the largest safe block number`, sp.name);
    this.nextBlock = end;
    this.batch.push({ kind, beginBlock, lengthBlocks });
    if (this.batch.length >= this.batchItems) this.flushWanted = true;
  }

  protected tag(sp: ElementSpec, form: Form, vals: number[], strings: Record<string, string> | undefined): void {
    const id = sp.id;
    if (this.state === X_AFTER) this.fail(`unexpected <${form === 'close' ? '/' : ''}${sp.name}> after </superblock>`, sp.name);
    if (id === EL_RANGE) {
      if (this.state !== X_KIND) this.fail('<range> outside <same>, <different>, <left_only> or <right_only>', sp.name);
      if (form !== 'empty') this.fail('<range> must be a self-closing element', sp.name);
      const c = this.container!;
      // vals: begin, length, data_begin, left_data_begin, right_data_begin
      if (c.id === EL_DIFFERENT) {
        if (Number.isNaN(vals[3]) || Number.isNaN(vals[4])) this.fail(`<range> in <different> needs '${Number.isNaN(vals[3]) ? 'left_data_begin' : 'right_data_begin'}'`, sp.name);
        if (!Number.isNaN(vals[2])) this.fail(`<range> in <different> has unexpected attribute 'data_begin'`, sp.name);
      } else {
        if (Number.isNaN(vals[2])) this.fail(`<range> in <${c.name}> needs 'data_begin'`, sp.name);
        if (!Number.isNaN(vals[3]) || !Number.isNaN(vals[4])) this.fail(`<range> in <${c.name}> has unexpected attribute '${Number.isNaN(vals[3]) ? 'right_data_begin' : 'left_data_begin'}'`, sp.name);
      }
      this.push(KIND_OF[c.id]!, sp, vals[0]!, vals[1]!);
      return;
    }
    const kind = KIND_OF[id];
    if (kind !== undefined) {
      if (form === 'close') {
        if (this.state !== X_KIND || this.container!.id !== sp.id) this.fail(`</${sp.name}> without an open <${sp.name}>`, sp.name);
        this.state = X_DIFF;
        this.container = undefined;
        return;
      }
      if (this.state === X_KIND) this.fail(`<${sp.name}> inside <${this.container!.name}> (opened at line ${this.containerLine})`, sp.name);
      if (this.state !== X_DIFF) this.fail(`<${sp.name}> outside <diff>`, sp.name);
      if (form === 'empty') {
        this.push(kind, sp, vals[0]!, vals[1]!);
        return;
      }
      // A verbose container (its schema allows no attributes: begin/length belong on its <range> elements).
      this.state = X_KIND;
      this.container = sp;
      this.containerLine = this.lineNo;
      return;
    }
    if (id === EL_DIFF) {
      if (form === 'close') {
        if (this.state === X_KIND) this.fail(`</diff> while <${this.container!.name}> (opened at line ${this.containerLine}) is open`, sp.name);
        if (this.state !== X_DIFF) this.fail('</diff> without an open <diff>', sp.name);
        this.state = X_AFTER_DIFF;
        return;
      }
      if (this.state === X_DIFF || this.state === X_KIND) this.fail(`<diff> inside <diff> (opened at line ${this.diffLine})`, sp.name);
      if (this.state === X_AFTER_DIFF) this.fail('a second <diff>', sp.name);
      if (this.state !== X_SUPERBLOCK) this.fail('<diff> outside <superblock>', sp.name);
      this.leftDevId = vals[0]!;
      this.rightDevId = vals[1]!;
      this.diffLine = this.lineNo;
      this.state = form === 'empty' ? X_AFTER_DIFF : X_DIFF;
      return;
    }
    if (id === EL_SUPERBLOCK) {
      if (form === 'close') {
        if (this.state === X_SUPERBLOCK) this.fail('</superblock> before any <diff>: thin_delta output has no diff', sp.name);
        if (this.state !== X_AFTER_DIFF) this.fail(`</superblock> while <diff> (opened at line ${this.diffLine}) is open`, sp.name);
        this.state = X_AFTER;
        return;
      }
      if (this.state !== X_BEFORE) this.fail(`<superblock> inside <superblock> (opened at line ${this.superblockLine})`, sp.name);
      if (form === 'empty') this.fail('<superblock/> without a <diff>', sp.name);
      this.superblock = this.superblockOf(vals, strings);
      this.superblockLine = this.lineNo;
      this.sink.onSuperblock?.(this.superblock);
      this.state = X_SUPERBLOCK;
      return;
    }
    this.fail(`unexpected element <${form === 'close' ? '/' : ''}${sp.name}> in thin_delta output`, sp.name);
  }

  protected flush(): Promise<void> | void {
    if (this.batch.length === 0) return;
    const b = this.batch;
    this.batch = [];
    const r = this.sink.onRanges(b);
    return r === undefined ? undefined : r;
  }

  protected atEnd(): void {
    if (this.state === X_BEFORE) this.fail('no <superblock> in thin_delta output (empty or truncated input)');
    if (this.state === X_KIND) this.fail(`input ended inside <${this.container!.name}> (opened at line ${this.containerLine}): truncated thin_delta output`, this.container!.name);
    if (this.state === X_DIFF) this.fail(`input ended inside <diff> (opened at line ${this.diffLine}): truncated thin_delta output`, 'diff');
    if (this.state === X_SUPERBLOCK) this.fail('input ended before <diff>: truncated thin_delta output', 'superblock');
    if (this.state === X_AFTER_DIFF) this.fail(`input ended before </superblock> (opened at line ${this.superblockLine}): truncated thin_delta output`, 'superblock');
  }
}

/**
 * Parses thin_delta's XML (plain or --verbose) as it arrives, handing ranges of
 * every kind to the sink in batches (awaited when the sink returns a promise).
 * Ranges must be in increasing, non-overlapping block order. Throws
 * ThinshipError BAD_METADATA on anything malformed or out of place.
 */
export async function parseThinDelta(input: Readable, sink: DeltaSink, opts: ParseOptions = {}): Promise<DeltaResult> {
  const p = new DeltaParser(sink, opts);
  await p.run(input);
  return { superblock: p.superblock!, leftDevId: p.leftDevId, rightDevId: p.rightDevId };
}
