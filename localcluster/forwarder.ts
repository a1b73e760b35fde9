// A TCP/Unix-socket relay: `node forwarder.ts <listen> <target>`, each `tcp:HOST:PORT` or `unix:PATH`. The simulated
// network (netns.ts) runs one inside every node namespace, from its loopback to a Unix socket, so processes there
// reach the apiserver on the root namespace's loopback through the shared filesystem, with no address added outside.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';

/** One end of a relay: a TCP address or a Unix socket path. */
type Endpoint = { host: string; port: number } | { path: string };

/** A listening relay; close() stops listening and cuts every relayed connection. */
export interface Relay {
  close(): Promise<void>;
}

/** Parses `tcp:HOST:PORT` or `unix:PATH`. */
function parseEndpoint(text: string): Endpoint {
  if (text.startsWith('unix:') && text.length > 5) return { path: text.slice(5) };
  const m = /^tcp:(.+):(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`endpoint ${JSON.stringify(text)}: give tcp:HOST:PORT or unix:PATH`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** Listens on `from` and pipes every connection to a new connection to `to`, both ways, until either side ends. */
export async function relay(from: Endpoint, to: Endpoint): Promise<Relay> {
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const server: Server = createServer((inbound) => {
    track(inbound);
    const outbound = 'path' in to ? connect(to.path) : connect(to.port, to.host);
    track(outbound);
    outbound.setNoDelay(true);
    inbound.setNoDelay(true);
    // Either side failing or closing ends the pair: nothing is left half open.
    const end = (): void => {
      inbound.destroy();
      outbound.destroy();
    };
    for (const s of [inbound, outbound]) s.on('error', end).once('close', end);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  if ('path' in from) await rm(from.path, { force: true }); // a socket file left by a killed relay
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const ready = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in from) server.listen(from.path, ready);
    else server.listen(from.port, from.host, ready);
  });
  return {
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

if (import.meta.main) {
  const [from, to] = process.argv.slice(2);
  if (!from || !to) {
    console.error('usage: node localcluster/forwarder.ts tcp:HOST:PORT|unix:PATH tcp:HOST:PORT|unix:PATH');
    process.exit(2);
  }
  const r = await relay(parseEndpoint(from), parseEndpoint(to));
  console.log(JSON.stringify({ msg: 'relaying', from, to }));
  for (const sig of ['SIGTERM', 'SIGINT'] as const)
    process.once(sig, () => void r.close().finally(() => process.exit(0)));
}
