/**
 * `thinship serve --listen HOST:PORT --config FILE`: the gRPC receiver
 * daemon. Logs structured JSON lines (pino) on stderr, at "info" unless
 * THINSHIP_LOG says otherwise; stops on SIGTERM or SIGINT, letting running
 * transfers checkpoint first. SIGHUP reloads the config: TLS files and
 * identities (docs/operations.md, certificate rotation); running transfers go
 * on, and a bad new config is logged at error with the old one kept.
 *
 * --receive-window / --connection-window override the config's HTTP/2
 * receive windows (per stream / per connection, bytes or 32M-style sizes):
 * on a long link a stream moves at most window ÷ RTT (docs/wan.md).
 */
import { applyTargetStateEnv } from '../target-state-env.js';
import { resolve } from 'node:path';
import { log } from '../../log.js';
import { loadReceiverConfig } from '../../rpc/server-config.js';
import { startReceiver } from '../../rpc/server.js';
import { HTTP2_DEFAULT_WINDOW_BYTES, HTTP2_MAX_WINDOW_BYTES } from '../../rpc/http2-window.js';
import { ThinshipError } from '../../errors.js';
import { parseByteCount } from '../source-args.js';
import { runDaemon } from '../signals.js';

export interface ServeFlags {
  listen: string;
  config: string;
  metricsListen?: string;
  insecure?: boolean;
  allowInsecureRemote?: boolean;
  stateDir?: string;
  receiveWindow?: string;
  connectionWindow?: string;
}

/** An HTTP/2 window from a flag: 65535 up to 2^31 - 1 bytes. */
export function parseWindowFlag(s: string, flag: string): number {
  const n = parseByteCount(s, flag);
  if (n < HTTP2_DEFAULT_WINDOW_BYTES || n > HTTP2_MAX_WINDOW_BYTES)
    throw new ThinshipError('USAGE', `${flag} ${s}: an HTTP/2 window is ${HTTP2_DEFAULT_WINDOW_BYTES} to ${HTTP2_MAX_WINDOW_BYTES} bytes`);
  return n;
}

export async function serveCommand(flags: ServeFlags): Promise<void> {
  applyTargetStateEnv();
  if (process.env.THINSHIP_LOG === undefined) log.level = 'info';
  // The flags override the file at start and at every reload alike.
  const load = async () => {
    const config = await loadReceiverConfig(flags.config);
    if (flags.stateDir) config.stateDir = resolve(flags.stateDir);
    if (flags.metricsListen !== undefined) config.metricsListen = flags.metricsListen;
    if (flags.receiveWindow !== undefined) config.receiveWindowBytes = parseWindowFlag(flags.receiveWindow, '--receive-window');
    if (flags.connectionWindow !== undefined) config.connectionWindowBytes = parseWindowFlag(flags.connectionWindow, '--connection-window');
    return config;
  };
  const config = await load();
  await runDaemon(
    'serve',
    log,
    () => startReceiver({ listen: flags.listen, config, insecure: flags.insecure, allowInsecureRemote: flags.allowInsecureRemote, log }),
    {
      // A stuck transfer's diagnosis: what each running transfer waits for (docs/operations.md).
      debugDump: (rx) => log.warn(rx.debugState(), 'debug state (SIGUSR2)'),
      reload: (rx) => rx.reload(load),
    },
  );
}
