"""The documentation a user reads: every link in README.md and docs/ leads somewhere, and
nothing points outside the repository (a clone has nothing beside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", page.read_text()).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*)$", line)
        if heading:
            name = slug(heading.group(1))
            count = seen.get(name, 0)
            seen[name] = count + 1
            found.add(name if count == 0 else f"{name}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_somewhere(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#a-heading) [b](missing.md) [c](other.md#nowhere)\n")
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no such heading"]


SOURCES = (".py", ".md", ".sh", ".conf", ".toml", ".txt", ".cfg", ".ini", ".html")
SKIPPED = {".git", ".venv", ".ci", "work", "__pycache__", "node_modules"}


def repository_texts() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & SKIPPED and path.suffix in SOURCES:
            found.append(path)
    return found + [ROOT / "Makefile"]


def test_nothing_points_outside_the_repository() -> None:
    # Only the CI's scripts that build vendored dependencies (.ci/) may reach beside it.
    outside = re.compile(r"\.\./share[d]|share[d]/spec|/work/share[d]")  # matches not itself
    pointing = [
        str(path.relative_to(ROOT))
        for path in repository_texts()
        if path != Path(__file__) and outside.search(path.read_text(errors="replace"))
    ]
    assert pointing == []
