#!/usr/bin/env node
/**
 * The command line of the delay-line relay (src/testing/delay-relay.ts): a
 * test and benchmark tool. Prints one JSON line with the port on stdout; on
 * SIGTERM/SIGINT its stats on stderr, then exits 0; on SIGUSR2 the state of
 * its lines on stderr.
 *   node dist/src/cli/delay-relay.js --listen 127.0.0.1:0 --to 127.0.0.1:7443 --delay-ms 25 --rate 1gbit
 */
import { pathToFileURL } from 'node:url';
import { startDelayRelay, parseRate } from '../testing/delay-relay.js';

function splitHostPort(s: string, flag: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(s);
  if (!m) throw new Error(`${flag} "${s}": expected HOST:PORT`);
  return { host: m[1]!, port: Number(m[2]) };
}

function parseBytes(s: string, flag: string): number {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(s.trim());
  if (!m) throw new Error(`${flag} "${s}": expected bytes, e.g. 1048576 or 4M`);
  return Number(m[1]) * 1024 ** (m[2] ? ' KMG'.indexOf(m[2][0]!.toUpperCase()) : 0);
}

async function main(argv: string[]): Promise<void> {
  let listen = '127.0.0.1:0';
  let to: string | undefined;
  let delayMs = 0;
  let rate = Infinity;
  let queueBytes: number | undefined;
  let capacityBytes: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--listen') listen = v();
    else if (a === '--to') to = v();
    else if (a === '--delay-ms') delayMs = Number(v());
    else if (a === '--rtt-ms') delayMs = Number(v()) / 2;
    else if (a === '--rate') rate = parseRate(v());
    else if (a === '--queue') queueBytes = parseBytes(v(), a);
    else if (a === '--capacity') capacityBytes = parseBytes(v(), a);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: delay-relay --to HOST:PORT [--listen HOST:PORT] [--delay-ms ONE_WAY | --rtt-ms RTT] [--rate 1gbit] [--queue BYTES] [--capacity BYTES]\n',
      );
      return;
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (!to) throw new Error('--to HOST:PORT is required');
  const l = splitHostPort(listen, '--listen');
  const t = splitHostPort(to, '--to');
  const relay = await startDelayRelay({
    listenHost: l.host,
    listenPort: l.port,
    toHost: t.host,
    toPort: t.port,
    delayMs,
    rateBitsPerSecond: rate,
    queueBytes,
    capacityBytes,
  });
  process.stdout.write(
    JSON.stringify({
      listening: `${relay.host}:${relay.port}`,
      port: relay.port,
      to,
      delayMs,
      rateBitsPerSecond: Number.isFinite(rate) ? rate : null,
      capacityBytes: relay.capacityBytes,
    }) + '\n',
  );
  const stop = () => {
    process.stderr.write(JSON.stringify({ stats: relay.stats() }) + '\n');
    void relay.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.on('SIGUSR2', () => process.stderr.write(JSON.stringify({ lines: relay.debug() }) + '\n'));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`delay-relay: ${(e as Error).message}\n`);
    process.exit(2);
  });
}
