/**
 * An independent oracle for tests: the byte image of a thin device of an
 * offline pool, computed straight from `thin_dump` output (a regex, not
 * thinship's parser) and the data file. Small volumes only (held in memory).
 */
import { execFileSync } from 'node:child_process';
import { openSync, readSync, closeSync } from 'node:fs';

export function expectedImage(metadataPath: string, dataPath: string, devId: number, volumeSizeBytes: number): Buffer {
  const xml = execFileSync('thin_dump', ['--dev-id', String(devId), metadataPath], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const blockBytes = Number(/data_block_size="(\d+)"/.exec(xml)![1]) * 512;
  const img = Buffer.alloc(volumeSizeBytes);
  const fd = openSync(dataPath, 'r');
  try {
    for (const m of xml.matchAll(/<(single|range)_mapping ([^>]*)\/>/g)) {
      const a = Object.fromEntries([...m[2]!.matchAll(/(\w+)="(\d+)"/g)].map((x) => [x[1], Number(x[2])]));
      const origin = a.origin_block ?? a.origin_begin!;
      const data = a.data_block ?? a.data_begin!;
      const len = a.length ?? 1;
      readSync(fd, img, origin * blockBytes, len * blockBytes, data * blockBytes);
    }
  } finally {
    closeSync(fd);
  }
  return img;
}
