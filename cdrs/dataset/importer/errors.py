"""Errors and their places: every error counted, the first ones kept; where a leg is
("cdrs[12].scustomer" in the main file, "legs.jsonl line 12: scustomer" in JSONL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cdrs.dataset.importer.values import show

if TYPE_CHECKING:
    from cdrs.dataset.importer.legs import Batch


class DatasetError(Exception):
    """The dataset has errors; nothing was written."""

    def __init__(self, messages: list[str], total: int | None = None) -> None:
        self.messages = messages
        self.total = len(messages) if total is None else total
        super().__init__(f"{self.total} error(s) in the dataset; nothing was written")

    def lines(self) -> list[str]:
        more = self.total - len(self.messages)
        return self.messages + ([f"... and {more} more"] if more > 0 else [])


class Errors:
    """Every error counted, the first `limit` kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.messages: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.messages) < self.limit:
            self.messages.append(message)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            raise DatasetError(self.messages, self.total)


# Places: "cdrs[12].scustomer" in the main file, "cdrs.jsonl line 12: scustomer" in JSONL.
Place = Callable[[int, str], str]


def main_place(line: int, name: str) -> str:
    return f"cdrs[{line}].{name}" if name else f"cdrs[{line}]"


def jsonl_place(filename: str) -> Place:
    def place(line: int, name: str) -> str:
        return f"{filename} line {line}: {name}" if name else f"{filename} line {line}"

    return place


def repeated_uniqueid(batch: Batch, k: int) -> str:
    place = batch.place(batch.lines[k], "uniqueid")
    return f"{place}: {show(batch.rows[k][0])} appears more than once in this import"
