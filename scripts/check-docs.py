#!/usr/bin/env python3
"""The documentation's links resolve, and the README stays a front door.

For README.md, BENCHMARKS.md and every docs/*.md: every relative Markdown link, `[x](path)`,
`[x](path#anchor)`, `[x](#anchor)` (and reference definitions `[x]: path`), names a file or
folder that exists (relative to the linking file), and its anchor, if any, is a heading of the
target as GitHub spells it (lowercase; punctuation dropped but `-` and `_`; spaces become `-`;
a repeated heading gets `-1`, `-2`, ...). Links inside code (fenced blocks, `spans`) are not
links; http(s) and other schemes are skipped. Also: README.md is at most 200 lines.

Prints each broken link as file:line and exits 1 if there is any. Python 3 standard library only.

    python3 scripts/check-docs.py [--root DIR]
"""

import argparse
import re
import sys
import unicodedata
from pathlib import Path

README_MAX_LINES = 200

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)((?:(?!\n[ \t]*\n)[^`])+?)\1")
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]\n]|\n(?![ \t]*\n)|\[[^\[\]\n]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)\s*=\s*\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text):
    """Each line with its number, and whether it is prose (not inside a fenced code block)."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            yield number, line, False
        elif fence is not None:
            if match and match.group(1).startswith(fence):
                fence = None
            yield number, line, False
        else:
            yield number, line, True


def blank_code_spans(text):
    """The text with each code span's content replaced by `x`s (its line breaks kept), so no
    link is found inside."""
    return CODE_SPAN.sub(lambda m: m.group(1) + re.sub(r"[^\n]", "x", m.group(2)) + m.group(1), text)


def slug(heading):
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LMN" or category == "Pc":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path, cache={}):
    """The anchors a Markdown file offers: its headings' slugs (numbered when repeated) and any
    explicit `<a name|id>`."""
    if path in cache:
        return cache[path]
    found, seen = set(), {}
    previous = None
    for _, line, prose in prose_lines(path.read_text(encoding="utf-8")):
        if not prose:
            previous = None
            continue
        headings = []
        atx = ATX_HEADING.match(line)
        if atx:
            headings.append(atx.group(2))
        elif previous and SETEXT_UNDERLINE.match(line) and not previous.lstrip().startswith(("|", "-", "*", ">")):
            headings.append(previous.strip())
        for heading in headings:
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
        previous = line if line.strip() and not atx else None
    cache[path] = found
    return found


def links(path):
    """Every link target in a Markdown file, with its line number. A link's text may run over
    several lines of a paragraph, so the prose is searched whole, fenced blocks blanked."""
    lines = []
    for number, line, prose in prose_lines(path.read_text(encoding="utf-8")):
        definition = REFERENCE_DEF.match(line) if prose else None
        if definition:
            yield number, definition.group(1)
        lines.append(line if prose and not definition else "")
    text = blank_code_spans("\n".join(lines))
    for match in INLINE_LINK.finditer(text):
        yield text.count("\n", 0, match.start()) + 1, match.group(1)


def check_link(source, target, root):
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None  # external (http, https, mailto, ...)
    part, _, anchor = target.partition("#")
    if part.startswith("/"):
        resolved = (root / part.lstrip("/")).resolve()
    elif part:
        resolved = (source.parent / part).resolve()
    else:
        resolved = source.resolve()
    if not resolved.exists():
        return f"no such file: {part}"
    if anchor:
        if resolved.is_dir() or resolved.suffix.lower() != ".md":
            return None  # an anchor into code (#L10) or a folder: not checked
        if anchor not in anchors(resolved):
            return f"no heading #{anchor} in {resolved.relative_to(root) if resolved.is_relative_to(root) else resolved}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the repository (default: this script's)")
    root = parser.parse_args().root.resolve()

    files = [root / "README.md", root / "BENCHMARKS.md", *sorted((root / "docs").glob("*.md"))]
    problems = []
    for path in files:
        name = path.relative_to(root)
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        for number, target in links(path):
            why = check_link(path, target, root)
            if why:
                problems.append(f"{name}:{number}: broken link ({target}): {why}")

    readme = root / "README.md"
    if readme.exists():
        count = len(readme.read_text(encoding="utf-8").splitlines())
        if count > README_MAX_LINES:
            problems.append(f"README.md: {count} lines, more than {README_MAX_LINES}: move detail into docs/")

    for problem in problems:
        print(problem)
    if problems:
        print(f"check-docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-docs: {len(files)} files, every link resolves, README.md within {README_MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
