import * as net from "node:net";
import { once } from "node:events";

// A TCP proxy between the browser and the server that can make the connections carrying event
// streams die the way a phone's do when its network changes: nothing more arrives, either way,
// and neither end hears a FIN. (Checked by hand: `context.setOffline` alone does not cut an
// open EventSource in Chromium.) New connections, and the others, go on working.

type Pair = { client: net.Socket; upstream: net.Socket; stream: boolean; silent: boolean };

export class SilencingProxy {
  private pairs = new Set<Pair>();

  private constructor(
    private server: net.Server,
    readonly port: number,
  ) {}

  /// Listens on a free port of 127.0.0.1 and forwards to `target` there.
  static async start(target: number): Promise<SilencingProxy> {
    const pairs = new Set<Pair>();
    const server = net.createServer((client) => {
      const upstream = net.connect(target, "127.0.0.1");
      const pair: Pair = { client, upstream, stream: false, silent: false };
      pairs.add(pair);
      client.on("data", (chunk) => {
        if (pair.silent) return;
        // HTTP/1.1: any request on this connection may be the event stream's.
        if (/^GET \/messages[?\s]/m.test(chunk.toString("latin1"))) pair.stream = true;
        upstream.write(chunk);
      });
      upstream.on("data", (chunk) => {
        if (!pair.silent) client.write(chunk);
      });
      // The server hears when the browser lets go, always; the browser hears of the server's
      // end only while the connection is alive.
      const drop = () => {
        pairs.delete(pair);
        upstream.destroy();
        client.destroy();
      };
      client.on("close", drop);
      client.on("error", drop);
      upstream.on("close", () => {
        if (!pair.silent) drop();
      });
      upstream.on("error", () => {
        if (!pair.silent) drop();
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const proxy = new SilencingProxy(server, (server.address() as net.AddressInfo).port);
    proxy.pairs = pairs;
    return proxy;
  }

  /// Silences every connection that has carried an event stream; returns how many.
  silenceStreams(): number {
    let n = 0;
    for (const pair of this.pairs) {
      if (pair.stream && !pair.silent) {
        pair.silent = true;
        n++;
      }
    }
    return n;
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.server.close();
    await once(this.server, "close");
  }
}
