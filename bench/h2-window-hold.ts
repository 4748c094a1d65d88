/**
 * What one paused HTTP/2 stream holds in a Node receiver, by stream and
 * connection receive window (not a test; run by hand after `npm run build`):
 *
 *   node dist/bench/h2-window-hold.js
 *
 * A plaintext Node http2 server pauses the stream at once (as grpc-js does
 * while a message waits for the receiver's buffer budget); a client uploads as
 * fast as flow control lets it. After the upload has stopped moving, prints
 * what the paused stream has buffered (readableLength) for each pair of
 * windows. The point: Node returns connection-window credit as soon as
 * nghttp2 has parsed a DATA frame, read or not, so the connection window does
 * not bound what a paused stream holds; the stream window does.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const MIB = 1024 * 1024;

async function held(streamWindowBytes: number, connectionWindowBytes: number): Promise<number> {
  const server = http2.createServer({ settings: { initialWindowSize: streamWindowBytes } });
  let paused: http2.ServerHttp2Stream | undefined;
  server.on('session', (s) => s.setLocalWindowSize(connectionWindowBytes));
  server.on('stream', (st) => {
    paused = st;
    st.pause();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const req = client.request({ ':method': 'POST', ':path': '/' });
  req.on('error', () => undefined);
  const chunk = Buffer.alloc(MIB, 7);
  let sent = 0;
  const pump = () => {
    while (sent < 4 * streamWindowBytes + 8 * MIB) {
      sent += chunk.length;
      if (!req.write(chunk)) {
        req.once('drain', pump);
        return;
      }
    }
  };
  pump();
  // Until the buffered amount has stopped growing for 300 ms (bounded: 20 s).
  let last = -1;
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = paused?.readableLength ?? 0;
    if (now === last && now > 0 && i >= 3) break;
    last = now;
  }
  const bytes = paused?.readableLength ?? 0;
  client.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return bytes;
}

process.stdout.write('stream window  connection window  held by the paused stream\n');
for (const [s, c] of [
  [32 * MIB, 32 * MIB],
  [32 * MIB, 1 * MIB],
  [4 * MIB, 32 * MIB],
  [4 * MIB, 1 * MIB],
] as const) {
  const b = await held(s, c);
  process.stdout.write(`${(s / MIB).toFixed(0).padStart(10)} MiB  ${(c / MIB).toFixed(0).padStart(13)} MiB  ${(b / MIB).toFixed(1).padStart(20)} MiB\n`);
}
