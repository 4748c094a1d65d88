/**
 * The delay relay (src/cli/delay-relay.ts, the command line of src/testing/delay-relay.ts) as its own process, for the
 * WAN benchmarks: its CPU is then its own (/proc), and it never shares an
 * event loop with what it measures.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The relay of this checkout's build. */
export const RELAY_SCRIPT = join(REPO_ROOT, 'dist/src/cli/delay-relay.js');

/**
 * Real-time FIFO scheduling for the relay: it stands for a link, which does
 * not queue for a CPU. Under the default policy the relay's main thread spent
 * as long waiting for a CPU as running (1.6 s of 16 s on this shared machine,
 * even at nice -10: autogroups confine nice to a session), and every wait
 * delays the data behind it. It uses a few tenths of a core; the kernel's RT
 * throttling still bounds it.
 */
export const REALTIME = ['chrt', '-f', '10'];

export interface RelayProcess {
  port: number;
  pid: number;
  /** SIGTERM, then the stats the relay printed. */
  stop(): Promise<Record<string, unknown>>;
}

/**
 * Starts the relay CLI and waits for its port. `prefix` runs it under another
 * command, e.g. REALTIME (below).
 */
export async function startRelayProcess(
  to: string,
  delayMs: number,
  rate: string,
  extra: string[] = [],
  script = RELAY_SCRIPT,
  prefix: string[] = [],
): Promise<RelayProcess> {
  const argv = [...prefix, process.execPath, script];
  const child = spawn(argv[0]!, [...argv.slice(1), '--listen', '127.0.0.1:0', '--to', to, '--delay-ms', String(delayMs), '--rate', rate, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const first = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const i = out.indexOf('\n');
      if (i >= 0) resolve(out.slice(0, i));
    });
    void exited.then(() => reject(new Error(`delay-relay exited: ${err.trim()}`)));
  });
  const port = (JSON.parse(first) as { port: number }).port;
  return {
    port,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      const line = err
        .trim()
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{"stats"'));
      return line ? (JSON.parse(line) as { stats: Record<string, unknown> }).stats : {};
    },
  };
}
