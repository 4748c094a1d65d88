/**
 * The operator's plain-HTTP listener (`--metrics-listen HOST:PORT`, config
 * `metricsListen`): GET /metrics (Prometheus text), /healthz (the process
 * answers) and /readyz (it can take transfers). Plain HTTP on purpose: a load
 * balancer's probe and a Prometheus scraper have no client certificate. It serves
 * nothing that writes and no transfer detail (no ids, identities or targets);
 * still, bind it to a management network or loopback.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ThinshipError } from '../errors.js';

/** Why the daemon is not ready, one line per reason; empty: ready. */
export type ReadinessCheck = () => Promise<string[]>;

export interface OpsListener {
  port: number;
  close(): Promise<void>;
}

export async function startOpsListener(o: { host: string; port: number; registry: Registry; ready: ReadinessCheck }): Promise<OpsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    switch (path) {
      case '/metrics':
        o.registry.metrics().then(
          (text) => reply(200, o.registry.contentType, text),
          (e: unknown) => reply(500, 'text/plain', `metrics failed: ${(e as Error).message}\n`),
        );
        return;
      case '/healthz':
        reply(200, 'text/plain', 'ok\n');
        return;
      case '/readyz':
        o.ready().then(
          (problems) =>
            problems.length === 0 ? reply(200, 'text/plain', 'ready\n') : reply(503, 'text/plain', `not ready:\n${problems.map((p) => `- ${p}\n`).join('')}`),
          (e: unknown) => reply(503, 'text/plain', `not ready:\n- readiness check failed: ${(e as Error).message}\n`),
        );
        return;
      default:
        reply(404, 'text/plain', 'not found (try /metrics, /healthz, /readyz)\n');
    }
  });
  // Slow or idle clients must not pin sockets: a probe is one short request.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException) =>
      reject(
        new ThinshipError(
          'USAGE',
          `--metrics-listen ${o.host}:${o.port}: ${e.code === 'EADDRINUSE' ? 'the address is in use' : e.code === 'EADDRNOTAVAIL' ? 'no such local address' : e.message}`,
          { cause: e },
        ),
      );
    server.once('error', fail);
    server.listen(o.port, o.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
