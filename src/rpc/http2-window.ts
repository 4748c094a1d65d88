/**
 * Raising the receiver's HTTP/2 receive window.
 *
 * In a client-streaming upload the *server's* receive window limits
 * throughput: with HTTP/2's default 64 KiB, the sender stops after 64 KiB
 * until the receiver's event loop has read the data and sent WINDOW_UPDATE.
 * grpc-js's server does not read `grpc-node.flow_control_window` (only its
 * client does) and has no option for it, so on every new HTTP/2 session we
 * (1) send SETTINGS_INITIAL_WINDOW_SIZE (each stream's window) and (2) raise
 * the connection-level window with setLocalWindowSize — the same two steps
 * grpc-js's client takes for its own window.
 *
 * The sessions are reached through Server.createHttp2Server, an internal
 * method of grpc-js (1.14): it creates each listening http2 server. We wrap
 * it on the one Server instance, never patch node_modules, and check the
 * method exists: if a grpc-js upgrade removes it, the server still works
 * with the default window and says so in the log (the service test asserts
 * the window is raised, so CI notices).
 */
import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';

/** 8 MiB: 8 messages of 1 MiB in flight per stream; measured gain in the README. */
export const DEFAULT_RECEIVE_WINDOW_BYTES = 8 * 1024 * 1024;
/** HTTP/2's largest window (2^31 - 1). */
const MAX_WINDOW = 2 ** 31 - 1;

type Http2ServerLike = http2.Http2Server | http2.Http2SecureServer;

export function raiseReceiveWindow(server: grpc.Server, windowBytes: number, log?: Logger, onSession?: (s: http2.ServerHttp2Session) => void): boolean {
  const w = Math.min(Math.max(65535, Math.floor(windowBytes)), MAX_WINDOW);
  const s = server as unknown as { createHttp2Server?: (creds: unknown) => Http2ServerLike };
  const original = s.createHttp2Server;
  if (typeof original !== 'function') {
    log?.warn('this grpc-js has no Server.createHttp2Server: the receive window stays at 64 KiB (slower uploads)');
    return false;
  }
  s.createHttp2Server = function (this: unknown, creds: unknown) {
    const h2 = original.call(this, creds);
    h2.on('session', (session: http2.ServerHttp2Session) => {
      try {
        session.settings({ initialWindowSize: w });
        session.setLocalWindowSize(w);
      } catch (e) {
        log?.warn({ err: (e as Error).message }, 'could not raise the HTTP/2 receive window of a session');
      }
      onSession?.(session);
    });
    return h2;
  };
  return true;
}
