import http from 'node:http';
import type { Socket } from 'node:net';
import { networkOf, RATE_LIMIT_PREFIXES } from '../src/auth/address.js';

/**
 * The demo's HTTP server, with the limits a login server needs against slow clients
 * (slowloris: sockets that trickle headers forever and exhaust the server's sockets and memory).
 * See docs/demo-app.md for the values and the reverse-proxy setting.
 */
export interface ServerLimits {
  /** Time to receive the request headers, ms (`HEADERS_TIMEOUT`, default 10 s; Node's is 60 s). */
  headersTimeout: number;
  /** Time to receive the whole request, ms (`REQUEST_TIMEOUT`, default 30 s; Node's is 300 s). */
  requestTimeout: number;
  /**
   * Open connections per client network (an IPv4 address, an IPv6 /64), `MAX_CONNECTIONS_PER_CLIENT`
   * (default 16; 0: no limit). Browsers open at most 6 per site. Peers trusted as proxies
   * (`TRUST_PROXY`) are not limited: they carry every client's connections, and limit their own.
   */
  maxConnectionsPerClient: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  maxConnectionsPerClient: 16,
});

/**
 * An HTTP server for `handler` with {@link ServerLimits}. `isTrustedProxy` is Express's compiled
 * `trust proxy` (`app.get('trust proxy fn')`).
 */
export function createDemoServer(
  handler: http.RequestListener,
  limits: Readonly<ServerLimits>,
  isTrustedProxy: (address: string, hop: number) => boolean = () => false,
): http.Server {
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeout,
      requestTimeout: limits.requestTimeout,
      // How often Node checks those two timeouts (its default, 30 s, would let a slow client
      // hold a socket that long past them).
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeout),
    },
    handler,
  );
  if (limits.maxConnectionsPerClient > 0) {
    const open = new Map<string, number>();
    server.on('connection', (socket: Socket) => {
      const address = socket.remoteAddress;
      if (!address || isTrustedProxy(address, 0)) return;
      const client = networkOf(address, RATE_LIMIT_PREFIXES);
      const count = (open.get(client) ?? 0) + 1;
      if (count > limits.maxConnectionsPerClient) {
        socket.destroy();
        return;
      }
      open.set(client, count);
      socket.once('close', () => {
        const left = (open.get(client) ?? 1) - 1;
        if (left > 0) open.set(client, left);
        else open.delete(client);
      });
    });
  }
  return server;
}
