/**
 * An offline thin pool whose one device (id 1) maps the whole volume onto
 * the data file block for block, filled with incompressible bytes (no
 * all-zero chunk): the size of test a send's memory or page-cache use needs.
 */
import { openSync, writeSync, closeSync, ftruncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const MiB = 1024 * 1024;

export interface FlatPool {
  metadataPath: string;
  dataPath: string;
  volumeSizeBytes: number;
  devId: number;
}

export function createFlatPool(dir: string, volumeSizeBytes: number, blockBytes = 64 * 1024): FlatPool {
  const blocks = volumeSizeBytes / blockBytes;
  const xml =
    `<superblock uuid="" time="1" transaction="1" version="2" data_block_size="${blockBytes / 512}" nr_data_blocks="${blocks}">\n` +
    `  <device dev_id="1" mapped_blocks="${blocks}" transaction="0" creation_time="0" snap_time="0">\n` +
    `    <range_mapping origin_begin="0" data_begin="0" length="${blocks}" time="0"/>\n  </device>\n</superblock>\n`;
  writeFileSync(join(dir, 'flat.xml'), xml);
  const metadataPath = join(dir, 'flat.tmeta');
  const m = openSync(metadataPath, 'w');
  ftruncateSync(m, 8 * MiB);
  closeSync(m);
  execFileSync('thin_restore', ['-i', join(dir, 'flat.xml'), '-o', metadataPath]);
  const dataPath = join(dir, 'flat.tdata');
  const fd = openSync(dataPath, 'w');
  try {
    const chunk = randomBytes(MiB);
    for (let off = 0; off < volumeSizeBytes; off += MiB) {
      chunk.writeUInt32LE(off / MiB, 0);
      writeSync(fd, chunk, 0, MiB, off);
    }
  } finally {
    closeSync(fd);
  }
  return { metadataPath, dataPath, volumeSizeBytes, devId: 1 };
}
