/**
 * thin_delta's XML: a superblock, one diff, its ranges in increasing,
 * non-overlapping order, checked as they stream (line-shape.ts reads the
 * lines, elements.ts decodes each element).
 */
import type { Readable } from 'node:stream';
import type { DeltaKind, DeltaRange, Superblock } from '../model.js';
import {
  EL_DIFF,
  EL_DIFFERENT,
  EL_RANGE,
  EL_SUPERBLOCK,
  KIND_OF,
  diffOf,
  superblockOf,
  RANGE_BEGIN,
  RANGE_DATA_BEGIN,
  RANGE_LEFT_DATA_BEGIN,
  RANGE_LENGTH,
  RANGE_RIGHT_DATA_BEGIN,
  type ElementSpec,
  type Form,
} from './elements.js';
import { LineParser, type ParseOptions } from './line-shape.js';

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

// ---------------------------------------------------------------------------
// thin_delta

const X_BEFORE = 0,
  X_SUPERBLOCK = 1,
  X_DIFF = 2,
  X_KIND = 3,
  X_AFTER_DIFF = 4,
  X_AFTER = 5;

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

  constructor(
    private readonly sink: DeltaSink,
    opts: ParseOptions,
  ) {
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
        if (Number.isNaN(vals[RANGE_LEFT_DATA_BEGIN]) || Number.isNaN(vals[RANGE_RIGHT_DATA_BEGIN]))
          this.fail(`<range> in <different> needs '${Number.isNaN(vals[RANGE_LEFT_DATA_BEGIN]) ? 'left_data_begin' : 'right_data_begin'}'`, sp.name);
        if (!Number.isNaN(vals[RANGE_DATA_BEGIN])) this.fail(`<range> in <different> has unexpected attribute 'data_begin'`, sp.name);
      } else {
        if (Number.isNaN(vals[RANGE_DATA_BEGIN])) this.fail(`<range> in <${c.name}> needs 'data_begin'`, sp.name);
        if (!Number.isNaN(vals[RANGE_LEFT_DATA_BEGIN]) || !Number.isNaN(vals[RANGE_RIGHT_DATA_BEGIN]))
          this.fail(
            `<range> in <${c.name}> has unexpected attribute '${Number.isNaN(vals[RANGE_LEFT_DATA_BEGIN]) ? 'right_data_begin' : 'left_data_begin'}'`,
            sp.name,
          );
      }
      this.push(KIND_OF[c.id]!, sp, vals[RANGE_BEGIN]!, vals[RANGE_LENGTH]!);
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
        this.push(kind, sp, vals[RANGE_BEGIN]!, vals[RANGE_LENGTH]!);
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
      ({ leftDevId: this.leftDevId, rightDevId: this.rightDevId } = diffOf(vals));
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
      this.superblock = superblockOf(vals, strings);
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
    if (this.state === X_KIND)
      this.fail(`input ended inside <${this.container!.name}> (opened at line ${this.containerLine}): truncated thin_delta output`, this.container!.name);
    if (this.state === X_DIFF) this.fail(`input ended inside <diff> (opened at line ${this.diffLine}): truncated thin_delta output`, 'diff');
    if (this.state === X_SUPERBLOCK) this.fail('input ended before <diff>: truncated thin_delta output', 'superblock');
    if (this.state === X_AFTER_DIFF)
      this.fail(`input ended before </superblock> (opened at line ${this.superblockLine}): truncated thin_delta output`, 'superblock');
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
