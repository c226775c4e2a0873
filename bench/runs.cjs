// The runs a load script recorded with `record_run` (bench/common.sh), for its summary in Node:
// `const { readRuns, median, usPerDelivery, fixed } = require("./bench/runs.cjs");` (the scripts
// run from the project root).
const fs = require("fs");

// Each label's runs, in the order recorded: { label: [report, ...] }.
exports.readRuns = (path) => {
  const runs = {};
  for (const line of fs.readFileSync(path, "utf8").trim().split("\n")) {
    const at = line.indexOf(" ");
    (runs[line.slice(0, at)] ??= []).push(JSON.parse(line.slice(at + 1)));
  }
  return runs;
};

// The median; of an even count, the lower of the middle two.
exports.median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
};

// Server µs per delivery: its CPU seconds while publishing ÷ deliveries.
exports.usPerDelivery = (r) => (r.server_cpu_s * 1e6) / r.deliveries;

exports.fixed = (x, d = 2) => (+x).toFixed(d);
