// The ways the tabs of one browser can share its one stream (feed.js), each forced by an init
// script that takes away what the better ones need.

export type HubMode = { key: string; name: string; script: () => void };

export const hubModes: HubMode[] = [
  { key: "worker", name: "a SharedWorker", script: () => {} },
  {
    key: "leader",
    name: "a leader tab (no SharedWorker: Web Locks and BroadcastChannel)",
    script: () => {
      delete (window as any).SharedWorker;
    },
  },
  {
    key: "alone",
    name: "a stream per tab (neither SharedWorker nor Web Locks)",
    script: () => {
      delete (window as any).SharedWorker;
      Object.defineProperty(Navigator.prototype, "locks", { configurable: true, get: () => undefined });
    },
  },
];
