/**
 * The line reader both XML parsers share (dump.ts for thin_dump, delta.ts for
 * thin_delta): it matches each line against the shapes it has learned and
 * hands the parser the element and its values; elements.ts knows the element
 * and attribute names.
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
import { ThinshipError } from '../../errors.js';
import { OPEN_SPECS, SPECS, type ElementSpec, type Form } from './elements.js';

/** Items handed to a sink per call (the last batch of a device or a document may be smaller). */
const DEFAULT_BATCH_ITEMS = 4096;
/** A longer line is garbage: no tool prints one, and refusing it keeps memory bounded. */
export const MAX_LINE_BYTES = 64 * 1024;
/** Skeletons kept; the tools need about ten. Bounded so hostile input cannot grow memory. */
const MAX_SKELETONS = 64;

export interface ParseOptions {
  /** Maximum items per sink call (default DEFAULT_BATCH_ITEMS). */
  batchItems?: number;
  /** thin_dump --skip-mappings output: devices without mappings (a mapping is an error, mapped_blocks is not checked). */
  skipMappings?: boolean;
}

// ---------------------------------------------------------------------------
// Skeletons

export interface Skeleton {
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

export interface ParsedTag {
  form: Form;
  name: string;
  /** Attribute values as text (absent for close tags). */
  attrs: Record<string, string>;
}

const CLOSE_TAG = /^<\/([A-Za-z_][A-Za-z0-9_.:-]*)\s*>$/;
const DIGIT_VALUE = /=(["'])(\d+)\1/g;

/** Where a document-level error happened; used in every message. */
export class Where {
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

export abstract class LineParser {
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
}
