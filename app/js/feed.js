// Ringback's feed in the browser: one EventSource per browser, shared by its tabs.
//
// This one script runs in two places. In a page it defines `RingbackFeed`, what the page's
// WASM follows the feed through (`app/src/live.rs`). In a SharedWorker (the same URL, so the
// same cached bytes) it is the hub that holds the browser's one EventSource for every tab.
//
// How the tabs of a browser share one stream, best first:
//   - a SharedWorker holds it; each tab talks to it over its MessagePort;
//   - without SharedWorker (Chrome on Android), the tabs elect a leader with the Web Locks API
//     (whoever holds the lock `ringback-hub`); the leader holds the stream and the tabs talk to
//     it over a BroadcastChannel; when the leader's tab goes, the lock passes to another tab,
//     which opens the stream again from the tabs' last ids;
//   - with neither, each tab holds its own stream.
//
// The hub follows the union of the tabs' filters, from the earliest id a tab still needs. It
// passes every event to every tab; each tab keeps the messages of its own channels after the
// last id it has seen, so a stream opened again from an earlier id doubles nothing. When a tab
// comes back from sleep (visible again, resumed, back online, restored from the back/forward
// cache) the hub opens a new stream from the last id and closes the old one once the new one is
// open: a phone's connection can die without a word, and the browser may not notice for minutes.
(() => {
  "use strict";
  const CONTROL = ["ringback.channel", "ringback.gap", "ringback.source", "ringback.presence", "ringback.refused", "ringback.end"];
  // A tab says it is there this often, and is forgotten when it has not for GONE_MS (a hidden
  // tab's timers may run once a minute; a tab that closes says so at once).
  const PING_MS = 20_000;
  const GONE_MS = 150_000;
  const SPARE_MS = 5_000; // a replacement not open by then (a dead pooled socket?) is tried again
  const ONLINE_JITTER_MS = 300; // the machines of one network come back online together
  const SETTLE_MS = 30; // tabs that follow together (a new leader's) open one stream

  // ---- The hub: one EventSource for every tab it serves ----
  class Hub {
    constructor(send) {
      this.send = send; // (message) → every tab
      // id → { filter: string[] | null, after: id the tab still needs messages after, or null
      // once the stream serves it, seen: ms }
      this.tabs = new Map();
      this.known = new Set(); // channel names the stream's listeners cover
      this.es = null; // the stream
      this.spare = null; // a stream opening to replace it (make before break)
      this.key = null; // the union filter `es` follows
      this.at = null; // the id `es` has delivered through (or was opened after)
      this.backoff = 500;
      this.notBefore = 0; // the server said when to come back (`retry_ms` of a refusal or end)
      this.settling = null; // a pending open for tabs that came or went
      this.retrying = null; // a pending open after the browser gave up on the stream
      this.streams = 0; // streams opened, to name each: "<hub>:<n>"
      this.name = Math.random().toString(36).slice(2);
      this.sweeper = setInterval(() => this.sweep(), PING_MS);
    }

    handle(m) {
      const tab = this.tabs.get(m.tab);
      if (m.op === "follow") {
        for (const c of m.channels || []) this.listen(c);
        // A tab new to this hub may need messages the stream is past; a known one has them on
        // its way.
        const needs = !tab && m.after !== null && (this.at === null || m.after < this.at);
        this.tabs.set(m.tab, { filter: m.filter, after: needs ? m.after : null, seen: Date.now() });
        if (this.es && this.union() === this.key && !needs) {
          this.send({ kind: "state", open: this.es.readyState === 1 });
        } else this.soon();
      } else if (m.op === "leave") {
        if (this.tabs.delete(m.tab)) this.soon();
      } else if (!tab) {
        this.send({ kind: "who" }); // a tab this hub does not know: it follows again
      } else if (m.op === "ping") {
        tab.seen = Date.now();
      } else if (m.op === "check") {
        tab.seen = Date.now();
        this.refresh();
      }
    }

    /// Passes on the messages of channel `name` too (EventSource has no wildcard: a listener
    /// per event type).
    listen(name) {
      if (this.known.has(name)) return;
      this.known.add(name);
      for (const s of [this.es, this.spare]) if (s) s.addEventListener(name, s.forward(name));
    }

    /// "*" if a tab follows every channel, else the sorted union of their channels.
    union() {
      const all = new Set();
      for (const t of this.tabs.values()) {
        if (!t.filter) return "*";
        for (const c of t.filter) all.add(c);
      }
      return [...all].sort().join(",");
    }

    /// The id to open a stream after: the earliest a tab still needs.
    from() {
      let from = this.at;
      for (const t of this.tabs.values()) if (t.after !== null && (from === null || t.after < from)) from = t.after;
      return from;
    }

    /// Opens the stream the tabs need shortly, once for tabs that come or go together.
    soon() {
      clearTimeout(this.settling);
      this.settling = setTimeout(() => {
        this.settling = null;
        if (this.tabs.size === 0) return this.close();
        if (this.retrying) return; // it opens for the tabs there are then
        const behind = [...this.tabs.values()].some((t) => t.after !== null);
        if (!this.es || behind || this.union() !== this.key) this.open();
      }, SETTLE_MS);
    }

    /// A stream of the tabs' union from the earliest id they need, replacing the current one.
    open() {
      const after = this.from();
      this.close();
      if (this.tabs.size === 0) return;
      this.key = this.union();
      this.at = after;
      for (const t of this.tabs.values()) t.after = null;
      this.es = this.connect(after);
    }

    /// Back at once: a new stream from the last id, unless the server asked for time. The
    /// current one, if the browser thinks it open, closes once the new one is open (it may be
    /// dead without a word, or not: tabs drop what both deliver).
    refresh() {
      if (this.tabs.size === 0 || Date.now() < this.notBefore) return;
      if (!this.es || this.es.readyState !== 1) return this.open();
      if (this.spare) return;
      this.send({ kind: "state", open: false });
      const spare = this.connect(this.at, () => {
        this.es.close();
        this.es = spare;
        this.spare = null;
      });
      this.spare = spare;
      setTimeout(() => {
        if (this.spare !== spare) return;
        spare.close();
        this.spare = null;
        this.refresh();
      }, SPARE_MS);
    }

    /// An EventSource after `after`, passing its events to the tabs while it is the stream or
    /// the spare; `onOpen` runs when a spare opens.
    connect(after, onOpen = null) {
      const parts = this.key === "*" ? [] : this.key.split(",").filter((c) => c).map((c) => `type=${encodeURIComponent(c)}`);
      if (after !== null) parts.push(`lastEventId=${after}`);
      const es = new EventSource(parts.length ? `/messages?${parts.join("&")}` : "/messages");
      const stream = `${this.name}:${++this.streams}`;
      const live = () => es === this.es || es === this.spare;
      const forward = (type) => (e) => {
        if (!live()) return;
        if (type === "ringback.channel") {
          let name = null;
          try {
            name = JSON.parse(e.data).type;
          } catch (_) {}
          if (typeof name === "string") this.listen(name);
        } else if (type === "ringback.refused" || type === "ringback.end") {
          try {
            this.notBefore = Date.now() + (JSON.parse(e.data).retry_ms || 0);
          } catch (_) {}
        } else if (!type.startsWith("ringback.")) {
          const id = Number(e.lastEventId);
          if (this.at === null || id > this.at) this.at = id;
        }
        this.send({ kind: "event", type, data: e.data, id: e.lastEventId, stream });
      };
      es.forward = forward;
      es.addEventListener("open", () => {
        if (!live()) return;
        this.backoff = 500;
        if (es === this.spare && onOpen) onOpen();
        this.send({ kind: "state", open: true, opened: es.url, stream });
      });
      es.addEventListener("error", () => {
        if (es === this.spare && es.readyState === 2) {
          this.spare = null;
        } else if (es === this.es) {
          this.send({ kind: "state", open: false });
          // EventSource comes back by itself after `retry:`; it gives up only on an HTTP error.
          if (es.readyState === 2) this.retry();
        }
      });
      for (const name of [...CONTROL, ...this.known]) es.addEventListener(name, forward(name));
      return es;
    }

    /// Opens again after a jittered, growing delay (so that the pages of one outage do not
    /// retry in step), and not before the server said.
    retry() {
      this.close();
      const delay = Math.max(this.backoff * (0.5 + Math.random() / 2), this.notBefore - Date.now());
      this.backoff = Math.min(this.backoff * 2, 10_000);
      this.retrying = setTimeout(() => {
        this.retrying = null;
        this.open();
      }, delay);
    }

    sweep() {
      const now = Date.now();
      let gone = false;
      for (const [id, t] of this.tabs) {
        if (now - t.seen > GONE_MS) gone = this.tabs.delete(id);
      }
      if (gone) this.soon();
    }

    close() {
      for (const s of [this.es, this.spare]) if (s) s.close();
      this.es = this.spare = null;
      clearTimeout(this.settling);
      clearTimeout(this.retrying);
      this.settling = this.retrying = null;
    }

    stop() {
      this.close();
      clearInterval(this.sweeper);
    }
  }

  // ---- In a SharedWorker: the hub, its tabs on MessagePorts ----
  if (typeof SharedWorkerGlobalScope !== "undefined" && self instanceof SharedWorkerGlobalScope) {
    const ports = new Set();
    const hub = new Hub((m) => {
      for (const p of ports) p.postMessage(m);
    });
    self.onconnect = (e) => {
      const port = e.ports[0];
      ports.add(port);
      port.onmessage = (m) => {
        if (m.data.op === "bye") ports.delete(port);
        else hub.handle(m.data);
      };
      port.start();
    };
    return;
  }

  // ---- In a page: `RingbackFeed`, the page's view of the feed ----
  const script = document.currentScript && document.currentScript.src;

  class RingbackFeed {
    /// Follows `filter` (channel names, or null for every one) from after `after` (the page's
    /// first-paint id), knowing `channels`; `onEvent(type, data)` gets "open" and "error" for
    /// the stream's state, then every event: `ringback.*`, and the messages of the followed
    /// channels, each once, in order.
    constructor(options, onEvent) {
      this.id = Math.random().toString(36).slice(2) + Date.now().toString(36);
      this.filter = options.filter && options.filter.length ? options.filter : null;
      this.after = options.after ?? null;
      this.channels = options.channels || [];
      this.onEvent = onEvent;
      this.closed = false;
      this.hub = null; // the hub, when this tab holds it
      this.offs = [];
      this.mode = this.connect();
      this.follow();
      this.pinger = setInterval(() => this.post({ op: "ping" }), PING_MS);
      // Back at once: a phone that slept, a network that came back, a page from the cache.
      this.listen(document, "visibilitychange", () => {
        if (document.visibilityState === "visible") this.check();
      });
      this.listen(document, "resume", () => this.check());
      this.listen(window, "offline", () => this.receive({ kind: "state", open: false }));
      this.listen(window, "online", () => setTimeout(() => this.check(), Math.random() * ONLINE_JITTER_MS));
      this.listen(window, "pageshow", (e) => {
        if (!e.persisted) return;
        if (this.mode === "leader") this.lead();
        this.check();
      });
      this.listen(window, "pagehide", (e) => {
        if (e.persisted) this.leave();
        else this.close();
      });
    }

    listen(target, type, fn) {
      target.addEventListener(type, fn);
      this.offs.push(() => target.removeEventListener(type, fn));
    }

    /// Connects to a hub the best way this browser has; returns which.
    connect() {
      if (typeof SharedWorker !== "undefined" && script) {
        try {
          this.worker = new SharedWorker(script, { name: "ringback" });
          this.worker.port.onmessage = (m) => this.receive(m.data);
          this.worker.port.start();
          return "worker";
        } catch (_) {}
      }
      if (typeof BroadcastChannel !== "undefined" && navigator.locks) {
        this.channel = new BroadcastChannel("ringback");
        this.channel.onmessage = (m) => {
          if (m.data.op) {
            if (this.hub) this.hub.handle(m.data);
          } else if (!this.hub) this.receive(m.data);
        };
        this.lead();
        return "leader";
      }
      this.hub = new Hub((m) => this.receive(m));
      return "alone";
    }

    /// Asks for the lock that makes this tab the hub; while another tab holds it, this one
    /// follows over the channel. Holds it until the tab goes or sleeps in the cache.
    lead() {
      if (this.asking) return;
      this.asking = new AbortController();
      const granted = () => {
        this.asking = null;
        if (this.closed) return;
        this.hub = new Hub((m) => {
          this.channel.postMessage(m);
          this.receive(m);
        });
        this.channel.postMessage({ kind: "who" });
        this.follow();
        return new Promise((resolve) => {
          this.release = () => {
            this.hub.stop();
            this.hub = this.release = null;
            resolve();
          };
        });
      };
      navigator.locks.request("ringback-hub", { signal: this.asking.signal }, granted).catch(() => {});
    }

    /// Tells the hub, wherever it is.
    post(m) {
      m.tab = this.id;
      m.after = this.after;
      if (this.hub) this.hub.handle(m);
      else if (this.mode === "worker") this.worker.port.postMessage(m);
      else if (this.mode === "leader") this.channel.postMessage(m);
    }

    follow() {
      this.post({ op: "follow", filter: this.filter, channels: this.channels });
    }

    /// Back at once (and known to the hub again: a hidden tab's pings may have stopped).
    check() {
      if (this.closed) return;
      this.follow();
      this.post({ op: "check" });
    }

    /// The tab sleeps (in the back/forward cache): the hub serves the others.
    leave() {
      this.post({ op: "leave" });
      if (this.release) this.release();
      if (this.asking) this.asking.abort();
      this.asking = null;
    }

    follows(channel) {
      return !this.filter || this.filter.includes(channel);
    }

    receive(m) {
      if (this.closed) return;
      if (m.kind === "who") return this.follow();
      if (m.kind === "state") return this.onEvent(m.open ? "open" : "error", "");
      if (m.kind !== "event") return;
      if (m.type === "ringback.channel") {
        let name = null;
        try {
          name = JSON.parse(m.data).type;
        } catch (_) {}
        if (!this.follows(name)) return;
      } else if (m.type === "ringback.gap") {
        // The stream opened from an older tab's id; this tab lost nothing if it had seen the
        // id before the oldest the feed holds.
        let gap = {};
        try {
          gap = JSON.parse(m.data);
        } catch (_) {}
        if (gap.oldest != null && gap.after < gap.oldest && this.after !== null && this.after >= gap.oldest - 1) return;
      } else if (!m.type.startsWith("ringback.")) {
        // A message: each once, in order; only the followed channels'.
        const id = Number(m.id);
        if (this.after !== null && id <= this.after) return;
        this.after = id;
        if (!this.follows(m.type)) return;
      }
      this.onEvent(m.type, m.data);
    }

    close() {
      if (this.closed) return;
      this.leave();
      this.closed = true;
      clearInterval(this.pinger);
      for (const off of this.offs) off();
      if (this.mode === "worker") this.worker.port.postMessage({ op: "bye" });
      if (this.mode === "alone") this.hub.stop();
      if (this.channel) this.channel.close();
    }
  }

  self.RingbackFeed = RingbackFeed;
})();
