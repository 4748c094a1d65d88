import assert from 'node:assert/strict';
import { ThinshipError } from '../../src/errors.js';

/** `p` must reject with a ThinshipError of `code` whose message mentions each of `mentions`; returns it. */
export async function expectThinship(p: Promise<unknown>, code: string, mentions: string[]): Promise<ThinshipError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(e instanceof ThinshipError, `expected a ThinshipError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  for (const m of mentions) assert.ok(e.message.includes(m), `message ${JSON.stringify(e.message)} should mention ${m}`);
  return e;
}

/** `fn` must throw a ThinshipError of `code` whose message matches `re`, and (given) whose details name `volumeOffset`. */
export function throwsThinship(fn: () => unknown, code: string, re: RegExp, volumeOffset?: number): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ThinshipError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    if (volumeOffset !== undefined)
      assert.equal((e.details as { volumeOffset?: number }).volumeOffset, volumeOffset, `details name offset ${volumeOffset}: ${JSON.stringify(e.details)}`);
    return true;
  });
}
