/**
 * Raising the receiver's HTTP/2 receive windows.
 *
 * In a client-streaming upload the *server's* receive window limits
 * throughput: a sender may have at most one window of data unacknowledged,
 * so one stream moves at most window ÷ RTT. With HTTP/2's default 64 KiB
 * that is 1.3 MB/s at 50 ms, and even on loopback the sender stops every
 * 64 KiB until the receiver's event loop has read the data and sent
 * WINDOW_UPDATE. grpc-js's server does not read `grpc-node.flow_control_window`
 * (only its client does) and has no option for it, so:
 *
 *  - per stream: SETTINGS_INITIAL_WINDOW_SIZE in the server's settings
 *    (http2 Server.updateSettings), so the first SETTINGS frame of every
 *    session already carries it;
 *  - per connection: setLocalWindowSize on every new session, which sends a
 *    WINDOW_UPDATE on stream 0 (the connection window is not a setting).
 *
 * These are the same two steps grpc-js's client takes for its own window.
 * Memory: a stream's window bounds what a sender can push beyond what the
 * receiver has consumed (grpc-js pauses the stream while its message queue is
 * full, and Node then withholds the stream's WINDOW_UPDATE), so a slow target
 * holds at most one stream window per transfer in the receiver. The
 * connection window bounds nothing there: Node returns its credit as soon as
 * nghttp2 has parsed a DATA frame, read or not (bench/h2-window-hold.ts).
 *
 * The listening http2 servers are reached through Server.createHttp2Server,
 * an internal method of grpc-js (1.14) that creates each of them. We wrap it
 * on the one Server instance, never patch node_modules, and check that the
 * method exists: if a grpc-js upgrade removes it, the server still works with
 * the default windows and says so in the log (the service tests read the
 * windows from the wire as a peer does, so CI notices).
 */
import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';

/**
 * 32 MiB per stream: twice the bandwidth-delay product of 1 Gbit/s × 100 ms
 * (12.5 MB), because Node (nghttp2) returns credit only once half the window
 * has been consumed. Measured in docs/wan.md.
 */
export const DEFAULT_RECEIVE_WINDOW_BYTES = 32 * 1024 * 1024;
/** Per connection: the same as one stream (one transfer is one stream). */
export const DEFAULT_CONNECTION_WINDOW_BYTES = DEFAULT_RECEIVE_WINDOW_BYTES;
/** HTTP/2's default and smallest window. */
export const HTTP2_DEFAULT_WINDOW_BYTES = 65535;
/** HTTP/2's largest window (2^31 - 1). */
export const HTTP2_MAX_WINDOW_BYTES = 2 ** 31 - 1;

export interface ReceiveWindows {
  /** SETTINGS_INITIAL_WINDOW_SIZE: each stream's window. */
  streamBytes: number;
  /** The connection-level window, shared by all streams of a connection. */
  connectionBytes: number;
}

type Http2ServerLike = http2.Http2Server | http2.Http2SecureServer;

function clampWindow(n: number): number {
  return Math.min(Math.max(HTTP2_DEFAULT_WINDOW_BYTES, Math.floor(n)), HTTP2_MAX_WINDOW_BYTES);
}

/**
 * Sizes the receive windows, stream and connection, of every session, live
 * and future, of the servers it is given (by raiseReceiveWindow): the
 * receiver shrinks each sender's windows as more transfers run, so that what
 * the network may hold for all of them stays within its memory budget.
 *
 *  - The stream window is what bounds memory: a transfer whose stream grpc-js
 *    has paused (it waits for the record budget) holds up to one stream
 *    window of received data (bench/h2-window-hold.ts). It is the server's
 *    SETTINGS_INITIAL_WINDOW_SIZE (http2 Server.updateSettings) for sessions
 *    that connect later, and a new SETTINGS frame (session.settings) on live
 *    ones: RFC 9113 6.9.2 applies the change to every open stream, so a
 *    stream the sender has already filled past the new size waits until the
 *    receiver has consumed below it.
 *  - The connection window limits what one sender has in flight over all of
 *    its streams. Shrinking sends nothing (nghttp2 withholds WINDOW_UPDATE
 *    until the window is under the new size); growing sends a WINDOW_UPDATE.
 *
 * Changes are coalesced (one pass per event-loop turn).
 */
export class ConnectionWindowControl {
  readonly servers = new Set<Http2ServerLike>();
  readonly sessions = new Set<http2.ServerHttp2Session>();
  private pending: NodeJS.Immediate | undefined;
  /** Each stream's window (SETTINGS_INITIAL_WINDOW_SIZE), bytes. */
  streamWindowBytes: number;

  /**
   * Called with the number of open sessions whenever one opens or closes, before a new
   * session's window is set: the owner rescales (setWindow) so that a burst of new
   * connections is not each granted the window meant for one transfer.
   */
  onSessionCount?: (sessions: number) => void;

  /** `windowBytes`: each connection's window; `streamWindowBytes`: each stream's (the connection's unless given). */
  constructor(
    public windowBytes: number,
    private readonly log?: Logger,
    streamWindowBytes = windowBytes,
  ) {
    this.windowBytes = clampWindow(windowBytes);
    this.streamWindowBytes = clampWindow(streamWindowBytes);
  }

  setWindow(bytes: number, streamBytes = bytes): void {
    const w = clampWindow(bytes);
    const sw = clampWindow(streamBytes);
    if (w === this.windowBytes && sw === this.streamWindowBytes) return;
    const streamChanged = sw !== this.streamWindowBytes;
    this.windowBytes = w;
    this.streamWindowBytes = sw;
    if (streamChanged) {
      // Sessions that connect from now on start with it (their first SETTINGS frame).
      for (const h2 of this.servers) h2.updateSettings({ initialWindowSize: sw });
    }
    this.pending ??= setImmediate(() => {
      this.pending = undefined;
      const win = this.windowBytes;
      for (const s of this.sessions) {
        if (s.destroyed || s.closed) continue;
        try {
          s.setLocalWindowSize(win);
        } catch (e) {
          this.log?.debug({ err: (e as Error).message }, 'could not change the connection window of a session');
        }
        this.syncStreamWindow(s);
      }
    });
  }

  /**
   * Sends `s` a SETTINGS frame with the current stream window if its acknowledged one
   * differs. At most one is outstanding per session (Node refuses more than 10): while one
   * awaits its ACK nothing is sent, and the ACK ('localSettings') calls this again.
   */
  syncStreamWindow(s: http2.ServerHttp2Session): void {
    if (s.destroyed || s.closed || s.pendingSettingsAck) return;
    if (s.localSettings.initialWindowSize === this.streamWindowBytes) return;
    try {
      s.settings({ initialWindowSize: this.streamWindowBytes });
    } catch (e) {
      this.log?.debug({ err: (e as Error).message }, 'could not change the stream window of a session');
    }
  }
}

/**
 * Gives every session of `server` the receive windows (a number: the same for
 * stream and connection). Call before bindAsync. Returns false if this grpc-js
 * offers no way in (the windows then stay at 64 KiB).
 */
export function raiseReceiveWindow(
  server: grpc.Server,
  windows: number | ReceiveWindows,
  log?: Logger,
  onSession?: (s: http2.ServerHttp2Session) => void,
  control?: ConnectionWindowControl,
): boolean {
  const w = typeof windows === 'number' ? { streamBytes: windows, connectionBytes: windows } : windows;
  const stream = clampWindow(w.streamBytes);
  const connection = clampWindow(w.connectionBytes);
  const s = server as unknown as { createHttp2Server?: (creds: unknown) => Http2ServerLike };
  const original = s.createHttp2Server;
  if (typeof original !== 'function') {
    log?.warn('this grpc-js has no Server.createHttp2Server: the HTTP/2 receive windows stay at 64 KiB (slow uploads, very slow on long links)');
    return false;
  }
  s.createHttp2Server = function (this: unknown, creds: unknown) {
    const h2 = original.call(this, creds);
    h2.updateSettings({ initialWindowSize: control ? Math.min(control.streamWindowBytes, stream) : stream });
    control?.servers.add(h2);
    h2.on('session', (session: http2.ServerHttp2Session) => {
      if (control) {
        control.sessions.add(session);
        control.onSessionCount?.(control.sessions.size);
        session.once('close', () => {
          control.sessions.delete(session);
          control.onSessionCount?.(control.sessions.size);
        });
        // Each acknowledged SETTINGS (the first included) may find the window changed meanwhile.
        session.on('localSettings', () => control.syncStreamWindow(session));
      }
      try {
        session.setLocalWindowSize(control ? Math.min(control.windowBytes, connection) : connection);
      } catch (e) {
        log?.warn({ err: (e as Error).message }, 'could not raise the HTTP/2 connection window of a session');
      }
      onSession?.(session);
    });
    return h2;
  };
  return true;
}

/**
 * Calls `onServer` with every http2 server grpc-js creates for `server`
 * (through the same internal method as raiseReceiveWindow). Call before
 * bindAsync. Returns false if this grpc-js offers no way in.
 */
export function observeHttp2Servers(server: grpc.Server, onServer: (h2: Http2ServerLike) => void): boolean {
  const s = server as unknown as { createHttp2Server?: (creds: unknown) => Http2ServerLike };
  const original = s.createHttp2Server;
  if (typeof original !== 'function') return false;
  s.createHttp2Server = function (this: unknown, creds: unknown) {
    const h2 = original.call(this, creds);
    onServer(h2);
    return h2;
  };
  return true;
}
