/**
 * The elements thin_dump and thin_delta print: every element's attributes by
 * name (the schema both parsers check lines against), and each element decoded
 * from its attribute values into the named fields of model.ts.
 */
import type { DeltaKind, Mapping, Superblock, ThinDevice } from '../model.js';

export type Form = 'open' | 'empty' | 'close';

export interface AttrSpec {
  name: string;
  kind: 'int' | 'string';
  required: boolean;
  /** Smallest accepted value of an int attribute (default 0). */
  min?: number;
}

export interface ElementSpec {
  id: number;
  name: string;
  attrs: AttrSpec[];
  /** Attribute name -> index into `attrs` (and into the values array). */
  index: Map<string, number>;
}

const req = (name: string, min?: number): AttrSpec => ({ name, kind: 'int', required: true, min });
const opt = (name: string): AttrSpec => ({ name, kind: 'int', required: false });

export const EL_SUPERBLOCK = 0,
  EL_DEVICE = 1,
  EL_SINGLE = 2,
  EL_RANGE_MAPPING = 3,
  EL_DIFF = 4,
  EL_DIFFERENT = 6,
  EL_RANGE = 9,
  EL_DEF = 10,
  EL_REF = 11;
// Only this file names these (their elements are told apart by spec).
const EL_SAME = 5,
  EL_LEFT_ONLY = 7,
  EL_RIGHT_ONLY = 8;

function spec(id: number, name: string, attrs: AttrSpec[]): ElementSpec {
  return { id, name, attrs, index: new Map(attrs.map((a, i) => [a.name, i])) };
}

// Field order here is the order of the values array handed to handlers.
const SUPERBLOCK = spec(EL_SUPERBLOCK, 'superblock', [
  { name: 'uuid', kind: 'string', required: true },
  req('time'),
  req('transaction'),
  req('data_block_size', 1),
  req('nr_data_blocks'),
  // thin_dump has version (and flags in newer tools); thin_delta has neither (1.x adds flags);
  // the Rust tools' model also has metadata_snap.
  opt('flags'),
  opt('version'),
  opt('metadata_snap'),
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

export const SPECS = new Map<string, ElementSpec>(
  [SUPERBLOCK, DEVICE, SINGLE, RANGE_MAPPING, DIFF, SAME, DIFFERENT, LEFT_ONLY, RIGHT_ONLY, RANGE, DEF, REF].map((s) => [s.name, s]),
);
/** Start tags whose attributes differ from the self-closing form: the verbose delta containers have none. */
export const OPEN_SPECS = new Map<string, ElementSpec>([SAME, DIFFERENT, LEFT_ONLY, RIGHT_ONLY].map((s) => [s.name, spec(s.id, s.name, [])]));

export const KIND_OF: Record<number, DeltaKind> = {
  [EL_SAME]: 'same',
  [EL_DIFFERENT]: 'different',
  [EL_LEFT_ONLY]: 'left_only',
  [EL_RIGHT_ONLY]: 'right_only',
};

// ---------------------------------------------------------------------------
// Decoding: `vals` holds an element's int attributes in schema order (NaN when absent).

/** <superblock uuid time transaction data_block_size nr_data_blocks [flags] [version]> */
export function superblockOf(vals: number[], strings: Record<string, string> | undefined): Superblock {
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

/** <device dev_id mapped_blocks transaction creation_time snap_time> */
export function deviceOf(vals: number[]): ThinDevice {
  return { devId: vals[0]!, mappedBlocks: vals[1]!, transaction: vals[2]!, creationTime: vals[3]!, snapTime: vals[4]! };
}

/** <single_mapping origin_block data_block time/> or <range_mapping origin_begin data_begin length time/> */
export function mappingOf(elementId: number, vals: number[]): Mapping {
  return elementId === EL_SINGLE
    ? { originBlock: vals[0]!, dataBlock: vals[1]!, lengthBlocks: 1, time: vals[2]! }
    : { originBlock: vals[0]!, dataBlock: vals[1]!, lengthBlocks: vals[2]!, time: vals[3]! };
}

/** <diff left right> */
export function diffOf(vals: number[]): { leftDevId: number; rightDevId: number } {
  return { leftDevId: vals[0]!, rightDevId: vals[1]! };
}

/**
 * <same|different|left_only|right_only begin length/> and <range begin length
 * [data_begin] [left_data_begin] [right_data_begin]/>: the value indexes (these
 * lines are the bulk of a delta; read in place, not copied into an object).
 */
export const RANGE_BEGIN = 0,
  RANGE_LENGTH = 1,
  RANGE_DATA_BEGIN = 2,
  RANGE_LEFT_DATA_BEGIN = 3,
  RANGE_RIGHT_DATA_BEGIN = 4;
