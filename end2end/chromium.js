// How the tests (and bench/early-hints.mjs) run Chromium: plain JavaScript, so a Node script
// can require it as well as the TypeScript specs and config.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

// Debian's Chromium (test tools cannot download browsers here), quiet and without QUIC.
const launchOptions = {
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
};

// A HOME under `dir` whose NSS database (what Chromium on Linux reads) trusts the certificate
// authority in `caPem`, as docs/http2.md tells a developer to do with their own; returns it.
function homeTrusting(caPem, dir) {
  const home = path.join(dir, "home");
  const nssdb = path.join(home, ".pki", "nssdb");
  fs.mkdirSync(nssdb, { recursive: true });
  execFileSync("certutil", ["-d", `sql:${nssdb}`, "-N", "--empty-password"]);
  execFileSync("certutil", ["-d", `sql:${nssdb}`, "-A", "-t", "C,,", "-n", "ringback-development-ca", "-i", caPem]);
  return home;
}

module.exports = { launchOptions, homeTrusting };
