"""Summarise a py-spy ``--format raw`` profile: self time and inclusive time per function.

Usage: ``.venv/bin/python bench/profile_summary.py PROFILE.raw [TOP]``. Each raw
line is ``frame;frame;...;leaf COUNT``; frames are ``function (file:line)``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def function_of(frame: str) -> str:
    """``name (path:line)`` -> ``name (file)``: lines of one function count together."""
    name, _, where = frame.partition(" (")
    path = _LINE.sub("", "(" + where).lstrip("(")
    return f"{name} ({path.rsplit('/', 1)[-1]})"


def summarise(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [function_of(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    return total, own, inclusive


def main(argv: list[str]) -> int:
    total, own, inclusive = summarise(Path(argv[1]).read_text())
    top = int(argv[2]) if len(argv) > 2 else 25
    print(f"{total} samples")
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"\n{title}:")
        for function, count in counts.most_common(top):
            print(f"{100 * count / max(total, 1):6.1f}%  {function}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
