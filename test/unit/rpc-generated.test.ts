/**
 * src/rpc/generated/ is proto-loader-gen-types' output for proto/ (committed,
 * so the code builds without running it): a fresh generation with the
 * options of `npm run gen:proto` must give the same files, byte for byte.
 * When this fails, the .proto changed without `npm run gen:proto`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createRequire } from 'node:module';
import { repoRoot } from '../helpers/paths.js';

const GENERATED_DIR = 'src/rpc/generated';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath, d.name)))
    .sort();
}

test('the committed generated types are what proto-loader-gen-types makes of proto/ now', () => {
  const script = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['gen:proto']!;
  const [bin, ...args] = script.split(/\s+/);
  assert.equal(bin, 'proto-loader-gen-types');
  const out = mkdtempSync(join(tmpdir(), 'thinship-gen-'));
  try {
    const o = args.indexOf('-O');
    assert.equal(args[o + 1], GENERATED_DIR, 'gen:proto writes to src/rpc/generated');
    args[o + 1] = out;
    const cli = join(createRequire(join(repoRoot, 'package.json')).resolve('@grpc/proto-loader/package.json'), '../build/bin/proto-loader-gen-types.js');
    execFileSync(process.execPath, [cli, ...args], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
    const committed = join(repoRoot, GENERATED_DIR);
    const want = filesUnder(out);
    assert.ok(want.includes('thinship/v1/ReceiverService.ts'), want.join(', '));
    assert.deepEqual(filesUnder(committed), want, 'the same files (run npm run gen:proto)');
    for (const f of want) {
      assert.equal(
        readFileSync(join(committed, f), 'utf8'),
        readFileSync(join(out, f), 'utf8'),
        `${GENERATED_DIR}/${f} differs from a fresh generation (run npm run gen:proto)`,
      );
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
