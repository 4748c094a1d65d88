import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseThinDelta } from '../../src/thin/xml/delta.js';
import { parseThinDump, type DumpSink } from '../../src/thin/xml/dump.js';
import { MAX_LINE_BYTES } from '../../src/thin/xml/line-shape.js';
import type { DeltaRange, Mapping } from '../../src/thin/model.js';
import { ThinshipError } from '../../src/errors.js';
import { repoRoot } from '../helpers/paths.js';
import { fixtureOutput } from '../helpers/metadata-gen.js';

const sample = (name: string): string => fixtureOutput(join(repoRoot, 'test/fixtures/samples', name));

/** Feeds `text` in pieces of 1..maxPiece bytes (seeded), so lines and UTF-8 characters split across chunks. */
function chunked(text: string, seed: number, maxPiece = 13): Readable {
  const bytes = Buffer.from(text);
  const pieces: Buffer[] = [];
  let s = seed >>> 0;
  for (let i = 0; i < bytes.length;) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const n = 1 + ((s >>> 8) % maxPiece);
    pieces.push(bytes.subarray(i, i + n));
    i += n;
  }
  return Readable.from(pieces);
}

const whole = (text: string): Readable => Readable.from([Buffer.from(text)]);

async function dump(input: Readable, batchItems?: number) {
  const maps = new Map<number, Mapping[]>();
  const batches: Array<{ devId: number; n: number }> = [];
  const res = await parseThinDump(
    input,
    {
      onMappings(devId, batch) {
        batches.push({ devId, n: batch.length });
        maps.set(devId, [...(maps.get(devId) ?? []), ...batch]);
      },
    },
    { batchItems },
  );
  return { ...res, maps, batches };
}

async function delta(input: Readable, batchItems?: number) {
  const ranges: DeltaRange[] = [];
  const res = await parseThinDelta(
    input,
    {
      onRanges(b) {
        ranges.push(...b);
      },
    },
    { batchItems },
  );
  return { ...res, ranges };
}

const m = (originBlock: number, dataBlock: number, lengthBlocks: number, time: number): Mapping => ({ originBlock, dataBlock, lengthBlocks, time });
const SNAP2_MAPPINGS = [m(0, 0, 10, 0), m(10, 80, 4, 1), m(14, 14, 50, 0), m(100, 84, 2, 1), m(2052, 68, 12, 0)];
const SNAP1_MAPPINGS = [m(0, 0, 64, 0), m(2048, 64, 16, 0)];
const SAMPLE_DELTA: DeltaRange[] = [
  { kind: 'same', beginBlock: 0, lengthBlocks: 10 },
  { kind: 'different', beginBlock: 10, lengthBlocks: 4 },
  { kind: 'same', beginBlock: 14, lengthBlocks: 50 },
  { kind: 'right_only', beginBlock: 100, lengthBlocks: 2 },
  { kind: 'left_only', beginBlock: 2048, lengthBlocks: 4 },
  { kind: 'same', beginBlock: 2052, lengthBlocks: 12 },
];

test('thin_dump of the whole recorded pool: superblock, devices and mappings exactly', async () => {
  const r = await dump(whole(sample('thin_dump-all.xml')));
  assert.deepEqual(r.superblock, { uuid: '', time: 2, transaction: 3, flags: 0, version: 2, dataBlockSizeSectors: 128, nrDataBlocks: 0 });
  assert.deepEqual(r.devices, [
    { devId: 1, mappedBlocks: 78, transaction: 0, creationTime: 0, snapTime: 2 },
    { devId: 2, mappedBlocks: 80, transaction: 1, creationTime: 1, snapTime: 1 },
    { devId: 3, mappedBlocks: 78, transaction: 2, creationTime: 2, snapTime: 2 },
  ]);
  assert.deepEqual(r.maps.get(1), SNAP2_MAPPINGS);
  assert.deepEqual(r.maps.get(2), SNAP1_MAPPINGS);
  assert.deepEqual(r.maps.get(3), SNAP2_MAPPINGS);
});

test('thin_dump --dev-id samples hold one device each', async () => {
  const a = await dump(whole(sample('thin_dump-snap1.xml')));
  assert.deepEqual(
    a.devices.map((d) => d.devId),
    [2],
  );
  assert.deepEqual(a.maps.get(2), SNAP1_MAPPINGS);
  const b = await dump(whole(sample('thin_dump-snap2.xml')));
  assert.deepEqual(
    b.devices.map((d) => d.devId),
    [3],
  );
  assert.deepEqual(b.maps.get(3), SNAP2_MAPPINGS);
});

test('thin_dump --dev-id with an unknown id: a valid superblock with no device', async () => {
  const r = await dump(whole(sample('extras/thin_dump-unknown-id.txt')));
  assert.deepEqual(r.devices, []);
  assert.equal(r.superblock.transaction, 3);
  assert.equal(r.maps.size, 0);
});

test('thin_delta plain and --verbose give the same ranges, with device ids and no version/flags', async () => {
  for (const name of ['thin_delta.xml', 'thin_delta-verbose.xml']) {
    const r = await delta(whole(sample(name)));
    assert.deepEqual(r.ranges, SAMPLE_DELTA, name);
    assert.equal(r.leftDevId, 2);
    assert.equal(r.rightDevId, 3);
    assert.deepEqual(r.superblock, { uuid: '', time: 2, transaction: 3, dataBlockSizeSectors: 128, nrDataBlocks: 0 });
  }
  const same = await delta(whole(sample('extras/thin_delta-same.txt')));
  assert.deepEqual(same.ranges, [{ kind: 'same', beginBlock: 0, lengthBlocks: 8 }]);
});

test('input split into tiny chunks parses the same (lines and UTF-8 characters across chunk boundaries)', async () => {
  const text = sample('thin_dump-all.xml').replace('uuid=""', 'uuid="pööl-é→1"');
  for (let seed = 1; seed <= 20; seed++) {
    const r = await dump(chunked(text, seed));
    assert.equal(r.superblock.uuid, 'pööl-é→1');
    assert.deepEqual(r.maps.get(3), SNAP2_MAPPINGS);
    const d = await delta(chunked(sample('thin_delta-verbose.xml'), seed, 5));
    assert.deepEqual(d.ranges, SAMPLE_DELTA);
  }
});

test('a last line without a newline is still read', async () => {
  const text = sample('thin_dump-snap1.xml').trimEnd();
  assert.ok(text.endsWith('</superblock>'));
  const r = await dump(whole(text));
  assert.deepEqual(r.maps.get(2), SNAP1_MAPPINGS);
});

test('attributes are taken by name: other orders, quotes, spacing and optional 1.x attributes', async () => {
  const text = [
    `<superblock data_block_size="256" nr_data_blocks="9" uuid="u" time="7" transaction="8" metadata_snap="5" flags="1">`,
    `<device snap_time="5" creation_time="4" transaction="3" mapped_blocks="4" dev_id="9">`,
    `<single_mapping time="0" data_block="5" origin_block="3"/>`,
    `\t<single_mapping  origin_block='4'   data_block='7' time='2' />`,
    `  <range_mapping length="2" time="1" origin_begin="10" data_begin="20"/>`,
    `</device>`,
    ``,
    `</superblock>`,
    ``,
  ].join('\n');
  const r = await dump(whole(text));
  assert.deepEqual(r.superblock, { uuid: 'u', time: 7, transaction: 8, flags: 1, dataBlockSizeSectors: 256, nrDataBlocks: 9 });
  assert.deepEqual(r.devices, [{ devId: 9, mappedBlocks: 4, transaction: 3, creationTime: 4, snapTime: 5 }]);
  assert.deepEqual(r.maps.get(9), [m(3, 5, 1, 0), m(4, 7, 1, 2), m(10, 20, 2, 1)]);
  // thin_delta of 1.x with a needs_check pool has flags on its superblock too.
  const d = await delta(
    whole(
      `<superblock uuid="" time="1" transaction="1" flags="1" data_block_size="128" nr_data_blocks="0">\n<diff right="5" left="4">\n<left_only length="3" begin="7"/>\n</diff>\n</superblock>\n`,
    ),
  );
  assert.deepEqual(d.ranges, [{ kind: 'left_only', beginBlock: 7, lengthBlocks: 3 }]);
  assert.equal(d.superblock.flags, 1);
  assert.deepEqual([d.leftDevId, d.rightDevId], [4, 5]);
});

test('batches: at most batchItems, never mixing devices, in order', async () => {
  const r = await dump(whole(sample('thin_dump-all.xml')), 2);
  assert.deepEqual(r.batches, [
    { devId: 1, n: 2 },
    { devId: 1, n: 2 },
    { devId: 1, n: 1 },
    { devId: 2, n: 2 },
    { devId: 3, n: 2 },
    { devId: 3, n: 2 },
    { devId: 3, n: 1 },
  ]);
  assert.deepEqual(r.maps.get(3), SNAP2_MAPPINGS);
  const d = await delta(whole(sample('thin_delta.xml')), 4);
  assert.deepEqual(d.ranges, SAMPLE_DELTA);
});

test("onDevice comes before the device's mappings", async () => {
  const events: string[] = [];
  await parseThinDump(whole(sample('thin_dump-all.xml')), {
    onSuperblock: (sb) => events.push(`sb ${sb.transaction}`),
    onDevice: (d) => events.push(`dev ${d.devId}`),
    onMappings: (id, b) => {
      events.push(`maps ${id} ${b.length}`);
    },
  });
  assert.deepEqual(events, ['sb 3', 'dev 1', 'maps 1 5', 'dev 2', 'maps 2 2', 'dev 3', 'maps 3 5']);
});

/** A lazily generated dump: counts how many lines the source has produced. */
function lazyDump(mappings: number): { input: Readable; produced: () => number } {
  let produced = 0;
  async function* gen() {
    yield '<superblock uuid="" time="1" transaction="1" version="2" data_block_size="128" nr_data_blocks="0">\n';
    yield `<device dev_id="1" mapped_blocks="${mappings}" transaction="0" creation_time="0" snap_time="0">\n`;
    for (let i = 0; i < mappings; i++) {
      produced++;
      yield `<single_mapping origin_block="${i * 2}" data_block="${i}" time="0"/>\n`;
    }
    yield '</device>\n</superblock>\n';
  }
  return { input: Readable.from(gen(), { objectMode: false, highWaterMark: 256 }), produced: () => produced };
}

test('a sink returning a promise is awaited and pauses the input (backpressure)', async () => {
  const { input, produced } = lazyDump(20000);
  let inFlight = false;
  let maxAhead = 0;
  let seen = 0;
  const sink: DumpSink = {
    async onMappings(_id, batch) {
      assert.equal(inFlight, false, 'onMappings called again before the previous promise settled');
      inFlight = true;
      seen += batch.length;
      await new Promise((r) => setTimeout(r, 2));
      // While we were blocked, the source must not have run far ahead of what we consumed.
      maxAhead = Math.max(maxAhead, produced() - seen);
      inFlight = false;
    },
  };
  await parseThinDump(input, sink, { batchItems: 100 });
  assert.equal(seen, 20000);
  assert.ok(maxAhead < 2000, `source ran ${maxAhead} lines ahead of the sink`);
});

test('many lines of one shape take the fast path and give the same numbers as the slow path', async () => {
  // Values of every width, including the largest safe integer and leading zeros.
  const values = [0, 7, 10, 99, 12345, 4294967296, Number.MAX_SAFE_INTEGER - 10];
  const lines = values.map((v, i) => `    <single_mapping origin_block="${i}" data_block="${v}" time="${i % 2}"/>`);
  lines.push('    <single_mapping origin_block="7" data_block="007" time="0"/>');
  const text = `<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="0">\n  <device dev_id="1" mapped_blocks="${lines.length}" transaction="0" creation_time="0" snap_time="0">\n${lines.join('\n')}\n  </device>\n</superblock>\n`;
  const r = await dump(whole(text));
  assert.deepEqual(
    r.maps.get(1)!.map((x) => x.dataBlock),
    [...values, 7],
  );
  assert.deepEqual(
    r.maps.get(1)!.map((x) => x.time),
    [0, 1, 0, 1, 0, 1, 0, 0],
  );
});

// ---------------------------------------------------------------------------
// Strictness: every malformed input is BAD_METADATA naming the line and the element or attribute.

const SB = '<superblock uuid="" time="2" transaction="3" flags="0" version="2" data_block_size="128" nr_data_blocks="0">';
const DEV = (mapped: number, id = 1) => `  <device dev_id="${id}" mapped_blocks="${mapped}" transaction="0" creation_time="0" snap_time="2">`;
const SM = (o: number, d = o) => `    <single_mapping origin_block="${o}" data_block="${d}" time="0"/>`;
/** A dump with a device of three valid mappings (so the fast path has learnt the shape), then `bad` lines. */
const dumpDoc = (bad: string[], mapped = 3) => [SB, DEV(mapped), SM(0), SM(1, 5), SM(2, 9), ...bad, '  </device>', '</superblock>', ''].join('\n');

async function rejects(p: Promise<unknown>, line: number, ...words: RegExp[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ThinshipError, `not a ThinshipError: ${String(e)}`);
    assert.equal(e.code, 'BAD_METADATA', e.message);
    assert.match(e.message, new RegExp(`line ${line}\\b`), e.message);
    for (const w of words) assert.match(e.message, w);
    assert.equal(e.details.line, line);
    return true;
  });
}

const DUMP_ERRORS: Array<[string, string, number, ...RegExp[]]> = [
  // [what, document, line, words the message must contain]
  ['unknown element', dumpDoc(['    <foo a="1"/>']), 6, /unknown element <foo>/],
  [
    'unknown attribute',
    dumpDoc(['    <single_mapping origin_block="3" data_block="4" time="0" extra="1"/>'], 4),
    6,
    /single_mapping/,
    /unknown attribute 'extra'/,
  ],
  ['missing attribute', dumpDoc(['    <single_mapping origin_block="3" data_block="4"/>'], 4), 6, /single_mapping/, /missing required attribute 'time'/],
  [
    'non-digit integer on a learnt shape',
    dumpDoc(['    <single_mapping origin_block="3" data_block="4x" time="0"/>'], 4),
    6,
    /'data_block'="4x"/,
    /not a non-negative integer/,
  ],
  ['negative integer', dumpDoc(['    <single_mapping origin_block="-3" data_block="4" time="0"/>'], 4), 6, /'origin_block'="-3"/],
  ['fraction', dumpDoc(['    <single_mapping origin_block="3" data_block="4.5" time="0"/>'], 4), 6, /'data_block'="4.5"/],
  ['empty integer', dumpDoc(['    <single_mapping origin_block="3" data_block="" time="0"/>'], 4), 6, /'data_block'=""/],
  ['unsafe integer', dumpDoc(['    <single_mapping origin_block="3" data_block="9007199254740993" time="0"/>'], 4), 6, /'data_block'/, /safe integer/],
  ['repeated attribute', dumpDoc(['    <single_mapping origin_block="3" data_block="4" time="0" time="1"/>'], 4), 6, /single_mapping/, /repeated/],
  ['unquoted attribute', dumpDoc(['    <single_mapping origin_block=3 data_block="4" time="0"/>'], 4), 6, /single_mapping/],
  [
    'zero length range',
    dumpDoc(['    <range_mapping origin_begin="3" data_begin="4" length="0" time="0"/>'], 3),
    6,
    /range_mapping/,
    /'length'="0" must be at least 1/,
  ],
  [
    'zero length range on a learnt shape',
    dumpDoc(
      ['    <range_mapping origin_begin="3" data_begin="40" length="2" time="0"/>', '    <range_mapping origin_begin="5" data_begin="4" length="0" time="0"/>'],
      5,
    ),
    7,
    /range_mapping/,
    /'length'="0" must be at least 1/,
  ],
  ['mapping outside a device', [SB, SM(0), '</superblock>', ''].join('\n'), 2, /<single_mapping> outside a <device>/],
  ['device inside a device', dumpDoc([DEV(0, 2)]), 6, /<device> inside <device> \(opened at line 2\)/],
  ['text content', dumpDoc(['    hello']), 6, /unexpected text "hello"/],
  ['two tags on a line', dumpDoc([`${SM(3)}<x/>`], 4), 6, /more than one tag/],
  ['comment', dumpDoc(['    <!-- hi -->']), 6, /comment/],
  [
    'non-self-closing mapping',
    dumpDoc(['    <single_mapping origin_block="3" data_block="4" time="0">'], 4),
    6,
    /<single_mapping> must be a self-closing element/,
  ],
  ['mapping out of order', dumpDoc([SM(1, 50)], 4), 6, /single_mapping/, /origin block 1 is out of order/],
  [
    'overlapping range',
    dumpDoc(['    <range_mapping origin_begin="2" data_begin="40" length="2" time="0"/>'], 5),
    6,
    /range_mapping/,
    /out of order or overlaps/,
  ],
  ['mapped_blocks disagrees', dumpDoc([], 4), 6, /device 1 \(line 2\) says mapped_blocks="4" but its mappings cover 3 blocks/],
  ['device twice', [SB, DEV(0), '  </device>', DEV(0), '  </device>', '</superblock>', ''].join('\n'), 4, /device 1 appears twice/],
  ['shared subtree of 1.x', [SB, '  <def name="5">', '  </def>', '</superblock>', ''].join('\n'), 2, /<def>/, /--dev-id/],
  ['element of thin_delta', [SB, '  <diff left="1" right="2">', '</superblock>', ''].join('\n'), 2, /unexpected element <diff>/],
  ['mismatched close', [SB, DEV(0), '</superblock>', ''].join('\n'), 3, /<\/superblock> while <device> \(opened at line 2\) is open/],
  ['close without open', [SB, '  </device>', '</superblock>', ''].join('\n'), 2, /<\/device> without an open <device>/],
  [
    'zero block size',
    ['<superblock uuid="" time="2" transaction="3" data_block_size="0" nr_data_blocks="0">', '</superblock>', ''].join('\n'),
    1,
    /superblock/,
    /'data_block_size'="0" must be at least 1/,
  ],
  [
    'superblock missing attribute',
    ['<superblock uuid="" time="2" data_block_size="128" nr_data_blocks="0">', '</superblock>', ''].join('\n'),
    1,
    /superblock/,
    /'transaction'/,
  ],
  ['trailing garbage', `${dumpDoc([])}<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">\n`, 8, /after <\/superblock>/],
  ['trailing text', `${dumpDoc([])}junk\n`, 8, /unexpected text "junk"/],
  ['truncated inside a device', [SB, DEV(3), SM(0), SM(1), ''].join('\n'), 5, /ended inside <device> \(opened at line 2\)/, /truncated/],
  ['truncated mid-line', [SB, DEV(3), SM(0), SM(1), '    <single_mapping origin_bl'].join('\n'), 5, /single_mapping/],
  ['truncated before </superblock>', [SB, DEV(1), SM(0), '  </device>', ''].join('\n'), 5, /ended before <\/superblock> \(opened at line 1\)/],
  ['empty input', '', 1, /no <superblock>/],
  ['tool error text instead of XML', 'no current metadata snap\n', 1, /unexpected text "no current metadata snap"/],
];

for (const [what, doc, line, ...words] of DUMP_ERRORS) {
  test(`thin_dump strictness: ${what}`, async () => {
    await rejects(dump(whole(doc)), line, ...words);
    // The same error whatever the chunking (fast path, slow path and carried lines agree).
    await rejects(dump(chunked(doc, line + doc.length, 7)), line, ...words);
  });
}

test('thin_dump strictness: a line longer than the limit', async () => {
  const doc = `${SB}\n${DEV(0)}\n    <single_mapping origin_block="${'1'.repeat(MAX_LINE_BYTES)}`;
  await rejects(dump(chunked(doc, 3, 4096)), 3, /longer than/);
});

const DSB = '<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">';
const deltaDoc = (body: string[]) => [DSB, '  <diff left="2" right="3">', ...body, '  </diff>', '</superblock>', ''].join('\n');

const DELTA_ERRORS: Array<[string, string, number, ...RegExp[]]> = [
  ['out of order', deltaDoc(['    <same begin="10" length="4"/>', '    <different begin="3" length="1"/>']), 4, /different/, /block 3 is out of order/],
  ['overlap across kinds', deltaDoc(['    <same begin="10" length="4"/>', '    <left_only begin="13" length="1"/>']), 4, /left_only/, /overlaps/],
  [
    'overlap in verbose ranges',
    deltaDoc([
      '    <same>',
      '      <range begin="0" data_begin="0" length="10"/>',
      '    </same>',
      '    <different>',
      '      <range begin="9" left_data_begin="1" right_data_begin="2" length="1"/>',
      '    </different>',
    ]),
    7,
    /range/,
    /block 9 is out of order/,
  ],
  ['unknown kind', deltaDoc(['    <changed begin="1" length="1"/>']), 3, /unknown element <changed>/],
  ['missing length', deltaDoc(['    <same begin="1"/>']), 3, /same/, /'length'/],
  [
    'zero length on a learnt shape',
    deltaDoc(['    <same begin="0" length="1"/>', '    <same begin="1" length="0"/>']),
    4,
    /same/,
    /'length'="0" must be at least 1/,
  ],
  [
    'unknown attribute on diff',
    [DSB, '  <diff left="2" right="3" mode="x">', '  </diff>', '</superblock>', ''].join('\n'),
    2,
    /diff/,
    /unknown attribute 'mode'/,
  ],
  ['container with attributes', deltaDoc(['    <same begin="0" length="1">', '    </same>']), 3, /same/, /unknown attribute 'begin'/],
  ['range outside a container', deltaDoc(['    <range begin="0" data_begin="0" length="1"/>']), 3, /<range> outside/],
  [
    'different range without right_data_begin',
    deltaDoc(['    <different>', '      <range begin="0" left_data_begin="0" length="1"/>', '    </different>']),
    4,
    /range/,
    /right_data_begin/,
  ],
  [
    'same range with a left/right data block',
    deltaDoc(['    <same>', '      <range begin="0" data_begin="0" left_data_begin="0" length="1"/>', '    </same>']),
    4,
    /range/,
    /left_data_begin/,
  ],
  [
    'plain kind inside a container',
    deltaDoc(['    <same>', '      <same begin="0" length="1"/>', '    </same>']),
    4,
    /<same> inside <same> \(opened at line 3\)/,
  ],
  ['mismatched container close', deltaDoc(['    <same>', '    </different>']), 4, /<\/different> without an open <different>/],
  ['range outside diff', [DSB, '    <same begin="0" length="1"/>', '</superblock>', ''].join('\n'), 2, /<same> outside <diff>/],
  ['no diff', [DSB, '</superblock>', ''].join('\n'), 2, /no diff/],
  [
    'second diff',
    [DSB, '  <diff left="2" right="3">', '  </diff>', '  <diff left="2" right="3">', '  </diff>', '</superblock>', ''].join('\n'),
    4,
    /a second <diff>/,
  ],
  ['mapping element of thin_dump', deltaDoc([SM(0)]), 3, /unexpected element <single_mapping>/],
  [
    'truncated inside a container',
    [DSB, '  <diff left="2" right="3">', '    <same>', '      <range begin="0" data_begin="0" length="10"/>', ''].join('\n'),
    5,
    /ended inside <same> \(opened at line 3\)/,
  ],
  ['truncated inside diff', [DSB, '  <diff left="2" right="3">', '    <same begin="0" length="1"/>'].join('\n'), 4, /ended inside <diff>/],
  ['trailing garbage', `${deltaDoc([])}</superblock>\n`, 5, /after <\/superblock>/],
];

for (const [what, doc, line, ...words] of DELTA_ERRORS) {
  test(`thin_delta strictness: ${what}`, async () => {
    await rejects(delta(whole(doc)), line, ...words);
    await rejects(delta(chunked(doc, line, 5)), line, ...words);
  });
}

// ---------------------------------------------------------------------------
// Property: random dumps, printed as the tool would, parse back to what was printed.

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s / 4294967296;
  };
}

test('property: random dumps round-trip through the parser whatever the chunking', async () => {
  for (let seed = 1; seed <= 30; seed++) {
    const r = rng(seed);
    const devs: Array<{ id: number; maps: Mapping[] }> = [];
    for (let d = 0, n = 1 + Math.floor(r() * 3); d < n; d++) {
      const maps: Mapping[] = [];
      let o = Math.floor(r() * 3);
      for (let i = 0, k = Math.floor(r() * 300); i < k; i++) {
        const len = r() < 0.7 ? 1 : 1 + Math.floor(r() * 20);
        maps.push(m(o, Math.floor(r() * 1e9), len, Math.floor(r() * 3)));
        o += len + (r() < 0.5 ? 0 : Math.floor(r() * 5));
      }
      devs.push({ id: d * 7 + seed, maps });
    }
    const lines = [SB];
    for (const d of devs) {
      lines.push(
        DEV(
          d.maps.reduce((s, x) => s + x.lengthBlocks, 0),
          d.id,
        ),
      );
      for (const x of d.maps) {
        lines.push(
          x.lengthBlocks === 1
            ? `    <single_mapping origin_block="${x.originBlock}" data_block="${x.dataBlock}" time="${x.time}"/>`
            : `    <range_mapping origin_begin="${x.originBlock}" data_begin="${x.dataBlock}" length="${x.lengthBlocks}" time="${x.time}"/>`,
        );
      }
      lines.push('  </device>');
    }
    lines.push('</superblock>', '');
    const text = lines.join('\n');
    const got = await dump(chunked(text, seed, 1 + Math.floor(r() * 200)), 1 + Math.floor(r() * 50));
    assert.deepEqual(
      got.devices.map((d) => d.devId),
      devs.map((d) => d.id),
    );
    for (const d of devs) assert.deepEqual(got.maps.get(d.id) ?? [], d.maps, `seed ${seed} device ${d.id}`);
  }
});
