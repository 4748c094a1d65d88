/**
 * thin_dump's XML: a superblock, its devices, each device's mappings in
 * increasing origin order, checked as they stream (line-shape.ts reads the
 * lines, elements.ts decodes each element).
 */
import type { Readable } from 'node:stream';
import type { Mapping, Superblock, ThinDevice } from '../model.js';
import {
  EL_DEF,
  EL_DEVICE,
  EL_RANGE_MAPPING,
  EL_REF,
  EL_SINGLE,
  EL_SUPERBLOCK,
  deviceOf,
  mappingOf,
  superblockOf,
  type ElementSpec,
  type Form,
} from './elements.js';
import { LineParser, type ParseOptions } from './line-shape.js';

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

// ---------------------------------------------------------------------------
// thin_dump

const D_BEFORE = 0,
  D_SUPERBLOCK = 1,
  D_DEVICE = 2,
  D_AFTER = 3;

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

  constructor(
    private readonly sink: DumpSink,
    opts: ParseOptions,
  ) {
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
      const m = mappingOf(id, vals);
      const { originBlock, lengthBlocks } = m;
      if (originBlock < this.nextOrigin) {
        this.fail(
          `<${sp.name}> at origin block ${originBlock} is out of order or overlaps the previous mapping (which ended at block ${this.nextOrigin})`,
          sp.name,
        );
      }
      const end = originBlock + lengthBlocks;
      if (!Number.isSafeInteger(end)) this.fail(`<${sp.name}> ends beyond the largest safe block number`, sp.name);
      this.nextOrigin = end;
      this.deviceBlocks += lengthBlocks;
      const b = this.batch;
      b.push(m);
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
      const d: ThinDevice = deviceOf(vals);
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
      this.superblock = superblockOf(vals, strings);
      this.superblockLine = this.lineNo;
      this.sink.onSuperblock?.(this.superblock);
      this.state = form === 'empty' ? D_AFTER : D_SUPERBLOCK;
      return;
    }
    if (id === EL_DEF || id === EL_REF) {
      this.fail(
        `<${sp.name}> (a shared subtree, written by thin-provisioning-tools 1.x for whole-pool dumps) is not supported: dump one device with --dev-id`,
        sp.name,
      );
    }
    this.fail(`unexpected element <${form === 'close' ? '/' : ''}${sp.name}> in thin_dump output`, sp.name);
  }

  private endDevice(): void {
    const d = this.device!;
    if (this.deviceBlocks !== d.mappedBlocks && !this.skipMappings) {
      this.fail(
        `device ${d.devId} (line ${this.deviceLine}) says mapped_blocks="${d.mappedBlocks}" but its mappings cover ${this.deviceBlocks} blocks`,
        'device',
      );
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
    if (this.state === D_SUPERBLOCK)
      this.fail(`input ended before </superblock> (opened at line ${this.superblockLine}): truncated thin_dump output`, 'superblock');
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
