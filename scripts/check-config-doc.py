#!/usr/bin/env python3
"""The configuration table in docs/operations.md says what `ringback serve --help` says.

The table lies between `<!-- config-table: serve -->` and `<!-- /config-table -->` (it may be
split into several tables there, one per group of flags). Each table's header names its columns;
the ones compared are `option`, `env` and `default`, whichever of them a table has:

- option: `--name`, the long option; the doc and `--help` must list exactly the same ones;
- env: the first code span is the variable `--help` shows as `[env: NAME]` (more may follow,
  as fallbacks: "`RINGBACK_ADDR`, then `LEPTOS_SITE_ADDR`"); a cell that does not start with a
  code span ("none") says `--help` shows none;
- default: the first code span is what `--help` shows as `[default: X]`; a cell that does not
  start with a code span ("none: publishing is open") says `--help` shows none.

A region marked `<!-- config-table: publish -->` is checked against `ringback publish --help` the
same way; there is none today, so that check is skipped.

    python3 scripts/check-config-doc.py [--bin PATH] [--doc PATH] [--print-table COMMAND]

The binary is `--bin`, else `$RINGBACK_BIN`, else target/debug/ringback. `--print-table serve`
prints rows made from `--help` (its help text as the meaning), to start a new row from.
Python 3 standard library only.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION = re.compile(r"<!--\s*config-table:\s*(\w+)\s*-->(.*?)<!--\s*/config-table\s*-->", re.DOTALL)
OPTION_LINE = re.compile(r"^ {2,8}(?:-[A-Za-z0-9], )?(--[A-Za-z0-9][A-Za-z0-9-]*)(.*)$")
ENV = re.compile(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)(?:=[^\]]*)?\]")
DEFAULT = re.compile(r"\[default: ([^\]]*)\]")
LEADING_CODE = re.compile(r"^\s*(`+)(.+?)\1")
SKIPPED = {"--help", "--version"}


def help_options(binary, command):
    """Each long option of `ringback <command> --help`, in order: (name, env, default, group, text)."""
    # Without the variables the options read, so `--help` shows their defaults, not this shell's.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RINGBACK_", "LEPTOS_")) and k != "REDIS_URL"}
    env["COLUMNS"] = "1000"
    try:
        out = subprocess.run([binary, command, "--help"], env=env, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"check-config-doc: cannot run `{binary} {command} --help`: {error}")
    options, current, group = [], None, ""
    for line in out.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            current = [match.group(1), match.group(2).strip(), group]
            options.append(current)
        elif line and not line[0].isspace():
            current = None
            group = line.rstrip(":")
        elif current is not None and line.strip():
            current[1] += " " + line.strip()
    result = []
    for name, text, grp in options:
        if name in SKIPPED:
            continue
        env_match, default_match = ENV.search(text), DEFAULT.search(text)
        text = re.sub(r"^(?:\[?=?<[^>]*>\]?)\s*", "", text)  # the value placeholder
        result.append((name, env_match and env_match.group(1),
                       default_match and default_match.group(1), grp, text))
    return result


def split_row(line):
    """A table row's cells, split on `|` that is neither escaped nor inside a code span."""
    cells, cell, in_code, i = [], "", False, 0
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cell += "|"
            i += 2
            continue
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
        i += 1
    cells.append(cell.strip())
    return cells


def leading_code(cell):
    """The cell's first code span when the cell starts with one, else None."""
    match = LEADING_CODE.match(cell)
    return match.group(2).strip() if match else None


def doc_rows(doc, command):
    """Each row of the tables in `doc`'s region for `command`: (line, {column: cell}), or None
    when the doc has no such region."""
    text = doc.read_text(encoding="utf-8")
    regions = [m for m in REGION.finditer(text) if m.group(1) == command]
    if not regions:
        return None
    rows = []
    for region in regions:
        first_line = text[:region.start(2)].count("\n") + 1
        header = None
        for offset, line in enumerate(region.group(2).split("\n")):
            if not line.strip().startswith("|"):
                header = None
                continue
            cells = split_row(line)
            if header is None:
                header = [c.strip("* ").lower() for c in cells]
            elif all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            else:
                rows.append((first_line + offset, dict(zip(header, cells))))
    return rows


def check(binary, doc, command):
    """The differences between `doc`'s table for `command` and its `--help`, as messages; None
    when the doc has no table for it."""
    rows = doc_rows(doc, command)
    if rows is None:
        return None
    want = {name: (env, default) for name, env, default, _, _ in help_options(binary, command)}
    problems, seen = [], {}
    for line, row in rows:
        where = f"{doc}:{line}"
        if "option" not in row:
            problems.append(f"{where}: a table without an `option` column")
            continue
        name = leading_code(row["option"])
        if not name or not name.startswith("--"):
            problems.append(f"{where}: the option cell is not a `--name`: {row['option']!r}")
            continue
        if name in seen:
            problems.append(f"{where}: {name} listed twice (first on line {seen[name]})")
            continue
        seen[name] = line
        if name not in want:
            problems.append(f"{where}: {name} is not an option of `ringback {command} --help`")
            continue
        env, default = want[name]
        if "env" in row:
            doc_env = leading_code(row["env"])
            if doc_env != env:
                problems.append(f"{where}: {name}: env {doc_env or 'none'} in the doc, "
                                f"{env or 'none'} in --help")
        if "default" in row:
            doc_default = leading_code(row["default"])
            if doc_default != default:
                problems.append(f"{where}: {name}: default {doc_default or 'none'} in the doc, "
                                f"{default or 'none'} in --help")
    for name in want:
        if name not in seen:
            problems.append(f"{doc}: {name} (`ringback {command} --help`) is missing from the table")
    return problems


def print_table(binary, command):
    group = None
    for name, env, default, grp, text in help_options(binary, command):
        if grp != group:
            group = grp
            print(f"\n### {grp}\n\n| option | env | default | meaning |\n|---|---|---|---|")
        meaning = re.sub(r"\s*\[(?:env|default|possible values): [^\]]*\]", "", text).strip()
        print(f"| `{name}` | {f'`{env}`' if env else 'none'} | "
              f"{f'`{default}`' if default is not None else 'none'} | {meaning.replace('|', chr(92) + '|')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("RINGBACK_BIN", "target/debug/ringback"),
                        help="the ringback binary (default: $RINGBACK_BIN, else target/debug/ringback)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs/operations.md",
                        help="the Markdown file holding the table (default: docs/operations.md)")
    parser.add_argument("--print-table", metavar="COMMAND",
                        help="print table rows made from `ringback COMMAND --help`, and stop")
    args = parser.parse_args()
    binary = Path(args.bin)
    if not binary.is_absolute():
        binary = ROOT / binary

    if args.print_table:
        print_table(binary, args.print_table)
        return 0

    failed = False
    for command in ("serve", "publish"):
        problems = check(binary, args.doc, command)
        if problems is None:
            if command == "serve":
                print(f"{args.doc}: no `<!-- config-table: serve -->` region")
                failed = True
            else:
                print(f"check-config-doc: no table for `ringback {command}` in {args.doc}: skipped")
            continue
        for problem in problems:
            print(problem)
        if problems:
            failed = True
        else:
            print(f"check-config-doc: the `ringback {command}` table in {args.doc} matches --help")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
