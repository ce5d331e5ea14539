import { createServer, type AddressInfo } from "node:net";

/**
 * A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it for a listener that is
 * closed at once. Another process may take it before the caller binds it; tests and benches that
 * start servers on loopback accept that small race.
 */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
