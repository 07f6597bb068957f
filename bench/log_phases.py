"""Where a command's database time goes: sum a PostgreSQL server log's statement durations
by the statement's first words (run the server with log_min_duration_statement = 0).

    .venv/bin/python bench/log_phases.py SERVER_LOG [--since LINE] [--words 3]

Used for the import on the Citus coordinator (bench/README.md, "Import into the cluster").
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"duration: ([\d.]+) ms\s+(?:statement|execute[^:]*): (.*)")


def phases(lines: list[str], words: int) -> tuple[Counter, Counter]:
    seconds: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for line in lines:
        found = _LINE.search(line)
        if found:
            key = " ".join(found.group(2).split()[:words])
            seconds[key] += float(found.group(1)) / 1000
            count[key] += 1
    return seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--since", type=int, default=0, help="skip this many lines first")
    parser.add_argument("--words", type=int, default=3)
    args = parser.parse_args()
    lines = args.log.read_text(errors="replace").splitlines()[args.since :]
    seconds, count = phases(lines, args.words)
    print(f"{sum(seconds.values()):8.2f} s in all")
    for key, total in seconds.most_common(15):
        print(f"{total:8.2f} s {count[key]:6d}  {key[:70]}")


if __name__ == "__main__":
    main()
