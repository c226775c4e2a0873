#!/usr/bin/env python3
"""Draws the figures of BENCHMARKS.md (docs/figures/*.svg) from the recorded figures in
bench/results/*.json. Python's standard library only: a small SVG writer for bar and line charts
(axes, ticks, labels, legend) below, then one function per figure, each reading its JSON file.
The numbers live in the JSON files (each says which command produced them, when and where);
nothing here is a measurement. Run through bench/figures.sh.

Usage: python3 bench/plot.py [FIGURE ...]   (default: every figure; names as in FIGURES below)
"""
import json
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
OUT = os.path.join(ROOT, "docs", "figures")

# Colour-blind-safe (Okabe-Ito), in the order series are drawn.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000"]
INK, GREY, GRID = "#222222", "#666666", "#e4e4e4"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

SHAPE_NAMES = {
    "h1": "HTTP/1.1",
    "tls-h1": "TLS + HTTP/1.1",
    "tls-h2": "TLS + HTTP/2, 1 stream/conn.",
    "h2c": "h2c, multiplexed",
}


def load(name):
    with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
        return json.load(f)


def fmt(v):
    """A tick label: thousands separated, at most two decimals, no trailing zeros."""
    if abs(v - round(v)) < 1e-9:
        return f"{int(round(v)):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def figure(v):
    """A recorded figure as the JSON file has it: 22.0 stays 22.0, 610 stays 610."""
    if isinstance(v, float):
        whole, _, frac = repr(v).partition(".")
        return f"{int(whole):,}.{frac}" if frac else f"{int(whole):,}"
    return f"{v:,}"


def spread(xs):
    """Several runs' label: their range (the bar is their median), or the one value."""
    lo, hi = min(xs), max(xs)
    return figure(lo) if lo == hi else f"{figure(lo)}–{figure(hi)}"


def text_width(s, size):
    return 0.6 * size * len(s)


def nice_ticks(hi, count=5):
    """0 .. a round number at or above hi, in steps of 1, 2, 2.5 or 5 × 10^k."""
    if hi <= 0:
        hi = 1
    raw = hi / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag + 1e-12)
    n = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(n + 1)]


def wrap(s, width):
    """Greedy word wrap to lines of at most width characters."""
    lines, line = [], ""
    for word in s.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


class Svg:
    def __init__(self, width, height):
        self.width, self.height, self.items = width, height, []

    def line(self, x1, y1, x2, y2, stroke=INK, width=1.0, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"{d}/>'
        )

    def rect(self, x, y, w, h, fill, stroke=None):
        s = f' stroke="{stroke}"' if stroke else ""
        self.items.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"{s}/>')

    def circle(self, cx, cy, r, fill, stroke="#ffffff"):
        self.items.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{fill}" stroke="{stroke}" stroke-width="1"/>'
        )

    def polyline(self, points, stroke, width=2.0, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.items.append(f'<polyline points="{pts}" fill="none" stroke="{stroke}" stroke-width="{width}"{d}/>')

    def text(self, x, y, s, size=12, anchor="start", fill=INK, weight=None, rotate=False, halo=False):
        w = f' font-weight="{weight}"' if weight else ""
        r = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        # A white outline under the glyphs keeps a label readable where it crosses a line.
        h = ' stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"' if halo else ""
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{w}{r}{h}>{escape(s)}</text>'
        )

    def write(self, path, title):
        body = "\n".join(self.items)
        svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" font-family="{FONT}" role="img">\n'
            f"<title>{escape(title)}</title>\n"
            f'<rect x="0" y="0" width="{self.width}" height="{self.height}" fill="#ffffff"/>\n{body}\n</svg>\n'
        )
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg)


class Frame:
    """A chart's canvas: title, legend row, plot area with a y axis from 0, notes underneath."""

    def __init__(self, title, y_label, legend, notes, width=800, plot_height=300, x_label_rows=2, right_margin=24):
        self.width = width
        self.notes = [l for n in notes for l in wrap(n, 118)]
        self.left, self.right = 78, width - right_margin
        self.legend_rows = self.layout_legend(legend)
        self.top = 40 + 22 * len(self.legend_rows) + 12
        self.bottom = self.top + plot_height
        self.x_label_bottom = self.bottom + 16 + 14 * x_label_rows
        height = self.x_label_bottom + 14 + 14 * len(self.notes) + 8
        self.svg = Svg(width, height)
        self.svg.text(self.left - 60, 26, title, size=16, weight="bold")
        self.svg.text(18, (self.top + self.bottom) / 2, y_label, size=12, anchor="middle", fill=INK, rotate=True)
        self.legend(legend)
        for i, note in enumerate(self.notes):
            self.svg.text(18, self.x_label_bottom + 16 + 14 * i, note, size=10.5, fill=GREY)

    def layout_legend(self, entries):
        """Legend entries in rows that fit the width: [[(x, entry), ...], ...]."""
        rows, row, x = [], [], self.left
        for entry in entries:
            w = 18 + text_width(entry[0], 12)
            if row and x + w > self.width - 12:
                rows.append(row)
                row, x = [], self.left
            row.append((x, entry))
            x += w + 22
        if row:
            rows.append(row)
        return rows

    def legend(self, _entries):
        """entries: (label, colour, kind) with kind 'box', 'line', 'dash' or 'dot'."""
        for r, row in enumerate(self.legend_rows):
            y = 52 + 22 * r
            for x, (label, colour, kind) in row:
                if kind == "box":
                    self.svg.rect(x, y - 9, 12, 12, colour)
                elif kind == "dot":
                    self.svg.circle(x + 6, y - 3, 4, colour, stroke=INK)
                else:
                    self.svg.line(x - 2, y - 3, x + 14, y - 3, colour, 2.5 if kind == "line" else 1.8,
                                  None if kind == "line" else "5,3")
                self.svg.text(x + 18, y + 1, label, size=12)

    def y_axis(self, hi, fmt_tick=fmt, ticks=None, log=False):
        """From 0 to a round number above hi; or, with log, over the given ticks (first to last)."""
        ticks = ticks or nice_ticks(hi)
        self.y_log = log
        self.y_min, self.y_max = ticks[0], ticks[-1]
        for t in ticks:
            y = self.y(t)
            self.svg.line(self.left, y, self.right, y, GRID)
            self.svg.text(self.left - 6, y + 4, fmt_tick(t), size=11, anchor="end", fill=GREY)
        self.svg.line(self.left, self.top, self.left, self.bottom, INK)
        self.svg.line(self.left, self.bottom, self.right, self.bottom, INK)

    def y(self, v):
        if self.y_log:
            share = math.log(v / self.y_min) / math.log(self.y_max / self.y_min)
        else:
            share = v / self.y_max
        return self.bottom - (self.bottom - self.top) * share

    def reference(self, value, tag, colour=GREY):
        """A dashed horizontal line (a target, a bound), tagged outside the plot's right end (the
        legend says what it is)."""
        y = self.y(value)
        self.svg.line(self.left, y, self.right, y, colour, 1.2, "6,4")
        self.svg.text(self.right + 5, y + 4, tag, size=10.5, fill=colour)

    def write(self, name, title):
        path = os.path.join(OUT, name)
        self.svg.write(path, title)
        print(f"wrote {os.path.relpath(path, ROOT)}")


def bar_chart(name, title, y_label, categories, series, notes, references=(), reference_legend=None, value_labels=True):
    """Grouped bars. categories: labels ('\\n' splits a label over two lines). series: dicts with
    'label' and 'values', one per category, each None (not recorded), a number, or a dict with
    'value', optional 'runs' (each run drawn as a dot on the bar), optional 'range' [low, high]
    (the bar drawn to high, a tick at low) and optional 'text' (the label above the bar)."""

    def top(v):
        if v is None:
            return 0
        if isinstance(v, dict):
            return max([v["value"]] + list(v.get("runs", [])) + list(v.get("range", [])))
        return v

    colours = [s.get("colour", PALETTE[i]) for i, s in enumerate(series)]
    legend = [(s["label"], colours[i], "box") for i, s in enumerate(series)]
    if any(isinstance(v, dict) and v.get("runs") for s in series for v in s["values"]):
        legend.append(("each run", "#ffffff", "dot"))
    if references:
        legend.append((reference_legend, GREY, "dash"))
    rows = max(len(c.split("\n")) for c in categories)
    margin = 12 + max((text_width(r[1], 10.5) for r in references), default=12)
    f = Frame(title, y_label, legend, notes, x_label_rows=rows, right_margin=margin)
    hi = max([top(v) for s in series for v in s["values"]] + [r[0] for r in references])
    f.y_axis(hi * 1.08)
    for value, label in references:
        f.reference(value, label)
    group = (f.right - f.left) / len(categories)
    bar = min(46, group * 0.78 / len(series))
    for c, category in enumerate(categories):
        centre = f.left + group * (c + 0.5)
        for i, line in enumerate(category.split("\n")):
            f.svg.text(centre, f.bottom + 18 + 14 * i, line, size=11.5, anchor="middle")
        for k, s in enumerate(series):
            v = s["values"][c]
            x = centre + (k - len(series) / 2) * bar
            if v is None:
                f.svg.text(x + bar / 2, f.bottom - 4, "n/r", size=9.5, anchor="middle", fill=GREY)
                continue
            d = v if isinstance(v, dict) else {"value": v}
            high = max(d.get("range", [d["value"]]))
            y = f.y(high)
            f.svg.rect(x + 1, y, bar - 2, f.bottom - y, colours[k])
            if "range" in d:
                ylo = f.y(min(d["range"]))
                f.svg.line(x + 1, ylo, x + bar - 1, ylo, "#ffffff", 1.5)
            runs = d.get("runs", [])
            for j, r in enumerate(runs):
                dx = (j - (len(runs) - 1) / 2) * min(7, (bar - 6) / max(len(runs), 1))
                f.svg.circle(x + bar / 2 + dx, f.y(r), 3.2, "#ffffff", stroke=INK)
            if value_labels:
                label = d.get("text") or (spread(runs) if runs else figure(d["value"]))
                ytext = min(y, min((f.y(r) for r in runs), default=y)) - 5
                size = 10
                if text_width(label, size) > bar and len(series) > 1:
                    # Wider than its bar: smaller, and every other series' labels a line higher.
                    size = 9
                    ytext -= 11 * (k % 2)
                f.svg.text(x + bar / 2, ytext, label, size=size, anchor="middle", halo=True)
    f.write(name, title)


def line_chart(name, title, x_label, y_label, series, notes, references=(), reference_legend=None,
               x_ticks=None, y_fmt=fmt, x_fmt=fmt, log=False):
    """Lines through points. series: dicts with 'label', 'points' [(x, y, label or None)] and
    optional 'dash'; references: horizontal dashed lines (value, tag), reference_legend says
    what they are. With log, both axes are logarithmic over x_ticks (also the y ticks). A
    point's label goes below right of it, or where it fits and overlaps no other label."""
    legend = [(s["label"], s.get("colour", PALETTE[i]), "dash" if s.get("dash") else "line") for i, s in enumerate(series)]
    if references:
        legend.append((reference_legend, GREY, "dash"))
    margin = 12 + max((text_width(r[1], 10.5) for r in references), default=12)
    f = Frame(title, y_label, legend, notes, x_label_rows=2, right_margin=margin)
    ys = [p[1] for s in series for p in s["points"]] + [r[0] for r in references]
    f.y_axis(max(ys) * 1.08, y_fmt, ticks=x_ticks if log else None, log=log)
    xs = x_ticks or nice_ticks(max(p[0] for s in series for p in s["points"]))
    x_min, x_max = xs[0], xs[-1]

    def x(v):
        share = math.log(v / x_min) / math.log(x_max / x_min) if log else v / x_max
        return f.left + (f.right - f.left - 10) * share

    for t in xs:
        f.svg.line(x(t), f.bottom, x(t), f.bottom + 4, INK)
        f.svg.text(x(t), f.bottom + 17, x_fmt(t), size=11, anchor="middle", fill=GREY)
    f.svg.text((f.left + f.right) / 2, f.bottom + 38, x_label, size=12, anchor="middle")
    for value, label in references:
        f.reference(value, label)
    placed = []

    def free(box):
        x0, y0, x1, y1 = box
        return all(x1 < a or x0 > c or y1 < b or y0 > d for a, b, c, d in placed)

    for i, s in enumerate(series):
        colour = s.get("colour", PALETTE[i])
        pts = [(x(px), f.y(py)) for px, py, _ in s["points"]]
        f.svg.polyline(pts, colour, 2.2, "6,4" if s.get("dash") else None)
        for (px, py), (_, _, label) in zip(pts, s["points"]):
            if s.get("markers", True):
                f.svg.circle(px, py, 3.6, colour)
            if not label:
                continue
            w = text_width(label, 10)
            # Below right, below left, above left, above right: the first that fits and is free;
            # else the first that fits, moved down until free.
            fits = [
                (tx, ty)
                for tx, ty in ((px + 6, py + 14), (px - 6 - w, py + 14), (px - 6 - w, py - 7), (px + 6, py - 7))
                if tx >= f.left + 2 and tx + w <= f.width - 4 and ty <= f.bottom - 3
            ] or [(px + 6, py - 7)]
            tx, ty = next(((tx, ty) for tx, ty in fits if free((tx, ty - 10, tx + w, ty + 2))), fits[0])
            while not free((tx, ty - 10, tx + w, ty + 2)) and ty < f.bottom - 3:
                ty += 12
            placed.append((tx, ty - 10, tx + w, ty + 2))
            f.svg.text(tx, ty, label, size=10, fill=colour, halo=True)
    f.write(name, title)


# --- the figures -------------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs)


def source_note(src):
    return f"Data: {src['command']}; {src['date']}; {src['machine']}."


def fanout_latency():
    data = load("fanout.json")
    groups = {}
    for run in data["runs"]:
        if run["subscribers"] > 10000:  # 100,000 × 1/s: p99 460 ms, in the table, off this scale
            continue
        key = (run["subscribers"], run["rate"], run["shape"])
        groups.setdefault(key, []).append(run)
    keys = sorted(groups, key=lambda k: (k[0] * k[1], k[0], k[2] != "h1"))
    categories, series = [], []
    for sub, rate, shape in keys:
        per = "1 conn." if shape == "h2c" and sub <= 1000 else ""
        name = "HTTP/1.1" if shape == "h1" else f"h2c{', ' + per if per else ''}"
        categories.append(f"{name}\n{sub:,} × {rate}/s")
    for p in ("p50_ms", "p90_ms", "p99_ms"):
        values = []
        for k in keys:
            xs = [r[p] for r in groups[k] if p in r]
            values.append(None if not xs else {"value": median(xs), "runs": xs if len(xs) > 1 else []})
        series.append({"label": p.split("_")[0], "values": values})
    src = data["source"]
    bar_chart(
        "fanout-latency.svg",
        "Publish → receive latency by connection shape and load",
        "latency, ms (median of the runs)",
        categories,
        series,
        [
            "Bars: the median of the recorded runs, labelled with their range; dots: each run (p99 at h2c 10,000 × 10/s: 8 runs, p50 and p90 recorded in 3). "
            "h2c: 1,000 streams per connection. Not drawn: h2c 100,000 × 1/s (p99 460 ms; see bench/results/fanout.json).",
            source_note(src) + f" Builds: {src['builds']}.",
            "Redraw: bench/figures.sh, from bench/results/fanout.json.",
        ],
    )


def fanout_shapes():
    data = load("shapes.json")
    order = ["h1", "tls-h1", "tls-h2", "h2c"]
    values = []
    for shape in order:
        xs = [r["p99_ms"] for r in data["runs"] if r["shape"] == shape]
        values.append({"value": median(xs), "runs": xs})
    categories = [SHAPE_NAMES[s].replace(", ", ",\n") for s in order]
    for i, shape in enumerate(order):
        us = data["shapes"][shape].get("server_us_per_delivery_median")
        if us:
            categories[i] += f"\n{figure(us)} µs/delivery"
    browser, fanout = data["source"]["browser-shape"], data["source"]["fanout"]
    bar_chart(
        "fanout-shapes.svg",
        "p99 by connection shape, 10,000 subscribers × 10 msg/s",
        "p99 latency, ms",
        categories,
        [{"label": "p99 (median of the runs)", "values": values}],
        [
            "Bars: the median of the runs, labelled with their range; dots: each run. Server µs per delivery: the server's CPU seconds "
            "while publishing ÷ deliveries (median of the runs). Nothing lost in any run.",
            f"Data: HTTP/1.1, TLS + HTTP/1.1, TLS + HTTP/2: {browser['command']}, {browser['date']}, build {browser['build']}. "
            f"h2c: {fanout['command']}, {fanout['date']}. {browser['machine']}.",
            "Redraw: bench/figures.sh, from bench/results/shapes.json.",
        ],
    )


def memory():
    data = load("memory.json")
    order = ["h1", "tls-h1", "tls-h2", "h2c"]

    def bar(step):
        v = step["idle_kib_per_subscriber"]
        if isinstance(v, list):
            return {"value": max(v), "range": v, "text": f"{figure(v[0])}–{figure(v[1])}"}
        return v

    first, now, categories = [], [], []
    for shape in order:
        steps = [s for s in data["shapes"][shape]["steps"] if s["subscribers"] == 10000]
        first.append(bar(steps[0]))
        now.append(bar(steps[-1]))
        categories.append(f"{SHAPE_NAMES[shape]}\n{steps[0]['date']} → {steps[-1]['date']}")
    bar_chart(
        "memory.svg",
        "Server memory per idle subscriber, by connection shape",
        "KiB of server RSS per idle subscriber",
        categories,
        [{"label": "first measured", "values": first}, {"label": "now", "values": now}],
        [
            "10,000 idle subscribers per run: (RSS with them − RSS before) ÷ 10,000, as ringback-bench load reports it. "
            "A range (a white tick at its low end) where the runs differ. h2c: 1,000 streams per connection (2.90 KiB at 100,000).",
            source_note(data["source"]) + " Every step: bench/results/memory.json.",
            "Redraw: bench/figures.sh, from bench/results/memory.json.",
        ],
        references=[(t["kib"], f"{fmt(t['kib'])} KiB") for t in data["targets"]],
        reference_legend="targets: " + ", ".join(t["label"] for t in data["targets"]),
    )


def rate():
    data = load("rate.json")
    lines = [
        ("h1", 1000, "HTTP/1.1, 1,000 connections"),
        ("h2c", 1000, "h2c, 1,000 streams on 1 connection"),
        ("h2c", 10000, "h2c, 10,000 streams on 10 connections"),
    ]
    series = []
    for shape, subscribers, label in lines:
        runs = sorted(
            (r for r in data["runs"] if r["shape"] == shape and r["subscribers"] == subscribers),
            key=lambda r: r["rate"],
        )
        points = []
        for r in runs:
            offered = r["subscribers"] * r["rate"]
            note = f"p99 {figure(r['p99_ms'])} ms"
            if "rate_achieved" in r:
                note += f" ({r['rate_achieved']}/s sent)"
            points.append((offered, r["deliveries_per_s"], note))
        series.append({"label": label, "points": points})
    ticks = [20000, 50000, 100000, 200000, 500000, 1000000]
    series.append({"label": "offered (delivered = offered)", "points": [(ticks[0], ticks[0], None), (ticks[-1], ticks[-1], None)], "dash": True, "colour": GREY, "markers": False})
    k = lambda v: "0" if v == 0 else f"{fmt(v / 1e6)}M" if v >= 1e6 else f"{fmt(v / 1000)}k"
    line_chart(
        "rate.svg",
        "Deliveries per second against the offered rate",
        "offered deliveries/s (subscribers × msg/s asked)",
        "deliveries/s",
        series,
        [
            "Both axes logarithmic. Each point is one run, labelled with its p99; nothing lost in any. Where a point falls under the dashed line the single-threaded "
            "load tool's publisher, beside the readers on the same cores, could not send the rate asked (\"…/s sent\"), not the server.",
            source_note(data["source"]) + f" Build {data['source']['build']}. "
            "Later: 10,000 × 52/s over h2c delivered 516,717 and 518,371/s (p99 80.8, 78.5 ms; 2026-11-25).",
            "Redraw: bench/figures.sh, from bench/results/rate.json.",
        ],
        y_fmt=k,
        x_fmt=k,
        x_ticks=ticks,
        log=True,
    )


def attacks():
    data = load("attacks.json")
    names = [a["attack"] for a in data["attacks"]]
    series = []
    # Before the bounds in oranges, with them in blues; at peak dark, after light.
    colours = {("before", 0): "#D55E00", ("before", 1): "#F0B080", ("after", 0): "#0072B2", ("after", 1): "#8CC3E8"}
    for build, label in (("before", "before the bounds"), ("after", "with the bounds")):
        for j, (field, what) in enumerate((("rss_added_peak_mib", "at peak"), ("rss_added_after_mib", "2 s after"))):
            series.append(
                {"label": f"{what}, {label}", "values": [a[build][field] for a in data["attacks"]], "colour": colours[(build, j)]}
            )
    categories = [f"{n}\n{a['attackers']}".replace(" (3 connections of 1,000)", "") for n, a in zip(names, data["attacks"])]
    bar_chart(
        "attacks.svg",
        "Server memory added by hostile clients, at peak and after",
        "server RSS added, MiB",
        categories,
        series,
        [
            "Each attack against a fresh server with its default settings, beside a canary of 100 subscribers at 200 msg/s; "
            "the canary lost nothing in any run. Targets for h2-stalled: ≤ 64 MiB at peak, ≤ 16 MiB after.",
            source_note(data["source"]),
            "Redraw: bench/figures.sh, from bench/results/attacks.json.",
        ],
    )


def redis():
    data = load("redis.json")
    series = []
    for table, when, dash in (("after", "", False), ("before", ", before batching", True)):
        for publish in ("PUBLISH", "POST"):
            rows = sorted((r for r in data[table] if r["publish"] == publish), key=lambda r: r["servers"])
            pts = []
            for r in rows:
                label = None
                if r["p99_ms"] >= 5:
                    label = f"p99 {figure(r['p99_ms'])} ms"
                pts.append((r["servers"], r["redis_us_per_message"], label))
            colour = PALETTE[0] if publish == "PUBLISH" else PALETTE[1]
            series.append({"label": f"{publish}{when}", "points": pts, "dash": dash, "colour": colour})
    core = 1e6 / data["rate_msg_per_s"]
    line_chart(
        "redis.svg",
        "Redis CPU per message against the servers following it",
        "servers on one Redis",
        "Redis CPU µs per message",
        series,
        [
            f"{data['rate_msg_per_s']:,} msg/s published; the grey line at {fmt(core)} µs a message is one Redis core at that rate. "
            "PUBLISH: every server sequences every message; POST /messages: one server writes, every server reads. "
            "p99 labelled where ≥ 5 ms; nothing lost in any run.",
            source_note(data["source"]),
            "Redraw: bench/figures.sh, from bench/results/redis.json.",
        ],
        references=[(core, "1 core")],
        reference_legend=f"one Redis core at {data['rate_msg_per_s']:,} msg/s",
        x_ticks=[0, 4, 8, 12, 16, 20, 24, 28, 32],
    )


FIGURES = {
    "fanout-latency": fanout_latency,
    "fanout-shapes": fanout_shapes,
    "memory": memory,
    "rate": rate,
    "attacks": attacks,
    "redis": redis,
}


def main(argv):
    os.makedirs(OUT, exist_ok=True)
    names = argv or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        sys.exit(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    for n in names:
        FIGURES[n]()


if __name__ == "__main__":
    main(sys.argv[1:])
