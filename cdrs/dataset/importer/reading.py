"""Reading the files: the main file whole and bounded, the JSONL file in chunks of lines;
encoding, JSON and repeated-key problems with their place."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import orjson
from django.conf import settings

from cdrs.dataset.importer.errors import DatasetError, Errors, Place
from cdrs.dataset.importer.values import show


def read_main(source: BinaryIO | Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """The main file, parsed. It is read whole, so its size is bounded (a pipe or a
    device is read no further than the limit) and its first bytes are looked at before
    the rest is read."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return source
    limit = settings.ENSWITCH_IMPORT_MAX_FILE_BYTES
    too_big = (
        f"{name}: larger than ENSWITCH_IMPORT_MAX_FILE_BYTES ({limit:,} bytes); "
        "put the legs in a JSONL file (--cdrs), which may be of any size"
    )
    size = size_left(source)
    if size is not None and size > limit:
        raise DatasetError([too_big])
    head = source.read(min(limit + 1, 65536))
    problem = _encoding_problem(head)
    if problem:
        raise DatasetError([f"{name}: {problem}"])
    data = head + source.read(limit + 1 - len(head)) if len(head) <= limit else head
    if len(data) > limit:
        raise DatasetError([too_big])
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DatasetError([f"{name}: {_json_problem(data, exc)}"]) from None
    if type(doc) is not dict:
        raise DatasetError([f"{name}: must be a JSON object, not {show(doc)}"])
    repeated = find_repeated_keys(data, doc)
    if repeated:
        raise DatasetError([f"{place}: {REPEATED_KEY}" for place in repeated])
    return doc


def _encoding_problem(head: bytes) -> str | None:
    """Files that are not UTF-8 text, told apart by their first bytes."""
    start = head[:4]
    if start == b"\x00" * len(start) and start:
        return "is not text: it starts with NUL bytes"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in start:
        return "is UTF-16 text (a byte-order mark or NUL bytes at the start); save it as UTF-8"
    if head.startswith(b"\xef\xbb\xbf"):
        return "starts with a byte-order mark (EF BB BF); save it as UTF-8 without one"
    return None


def _json_problem(data: bytes, exc: orjson.JSONDecodeError) -> str:
    """orjson's complaint, with the place as a person looks for it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        column = bad.start - (data.rfind(b"\n", 0, bad.start) + 1) + 1
        return (
            f"not valid UTF-8 at byte {bad.start + 1:,} (line {line}, byte {column} of "
            f"the line): 0x{data[bad.start]:02X}"
        )
    return f"not valid JSON at line {exc.lineno} column {exc.colno}: {_json_message(exc)}"


def _json_message(exc: orjson.JSONDecodeError) -> str:
    if "infinity" in exc.msg or "out of range" in exc.msg:
        return "a number too large (more digits than a 64-bit integer holds)"
    return exc.msg


# Repeated keys in one object: orjson, like most parsers, would keep the last silently.
REPEATED_KEY = "this key appears more than once in its object"


def _entries(value: Any) -> int:
    """Members of all the objects in a parsed value."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            n += len(v)
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return n


class _Found:
    """Where repeated keys are, below one object or list: the slow reader keeps only this
    (every object without one becomes None), so it costs little memory."""

    def __init__(self, repeated: list[str], inside: list[tuple[str, _Found]]) -> None:
        self.repeated, self.inside = repeated, inside  # inside: (".key" or "[i]", found)


def _found_in(value: Any) -> _Found | None:
    if type(value) is list:
        inside = [(f"[{i}]", f) for i, v in enumerate(value) if (f := _found_in(v)) is not None]
        return _Found([], inside) if inside else None
    return value if type(value) is _Found else None


def _members(pairs: list[tuple[str, Any]]) -> _Found | None:
    seen: set[str] = set()
    repeated, inside = [], []
    for key, value in pairs:
        if key in seen:
            repeated.append(key)
        seen.add(key)
        if (found := _found_in(value)) is not None:
            inside.append((f".{key}", found))
    return _Found(repeated, inside) if repeated or inside else None


def find_repeated_keys(data: bytes, parsed: Any) -> list[str]:
    """Places ("customers[0].id") of keys repeated in an object; usually none.

    Cheap test first: outside strings a colon follows a key and nothing else, so the
    colons in the text are at least the keys; if they are as many as the members parsed,
    no key was repeated. Otherwise (a repeated key, or a colon inside a string) the text
    is read again, slowly, keeping only where keys repeat."""
    if data.count(b":") == _entries(parsed):
        return []
    try:
        top = _found_in(json.loads(data, object_pairs_hook=_members))
    except (ValueError, RecursionError):
        return []  # orjson read it; a limit of the slow reader is no error of the file
    found: list[str] = []
    stack: list[tuple[_Found | None, str]] = [(top, "")]
    while stack:
        f, at = stack.pop()
        if f is not None:
            found += [f"{at}.{key}" for key in f.repeated]
            stack += [(child, at + step) for step, child in f.inside]
    return sorted({place.removeprefix(".") for place in found})


def size_left(stream: BinaryIO | None) -> int | None:
    """Bytes left to read, when the stream is a regular file (a pipe's size is unknown)."""
    try:
        info = os.fstat(stream.fileno())  # type: ignore[union-attr]
        return info.st_size - stream.tell() if stat.S_ISREG(info.st_mode) else None  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


class LineTooLong(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The stream's lines, none read into memory beyond `limit` bytes."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            raise LineTooLong(0)
        yield line


def read_chunks(stream: BinaryIO, size: int, read: list[int]) -> Iterator[list[tuple[int, bytes]]]:
    """The JSONL file's lines, numbered from 1, `size` at a time (blank lines skipped).
    read[0] counts the bytes read so far. A line longer than the limit ends the reading
    (LineTooLong): where the next line starts is not known without reading it all."""
    chunk: list[tuple[int, bytes]] = []
    n = 0
    try:
        for n, line in enumerate(_lines(stream, settings.ENSWITCH_IMPORT_MAX_LINE_BYTES), 1):  # noqa: B007
            read[0] += len(line)
            if len(line) < 4 and not line.strip():
                continue
            chunk.append((n, line))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except LineTooLong:
        if chunk:
            yield chunk
        raise LineTooLong(n + 1) from None
    if chunk:
        yield chunk


def parse_lines(
    chunk: list[tuple[int, bytes]], place: Place, errors: Errors
) -> list[tuple[int, Any]]:
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    repeated_keys, count = find_repeated_keys, bytes.count
    items = []
    for n, line in chunk:
        try:
            obj = loads(line)
        except decode_error as exc:
            errors.add(f"{place(n, '')}: {_jsonl_problem(line, exc)}")
            continue
        # find_repeated_keys' cheap test, inline for the common case: a leg, no nested object
        # but its cost records.
        members = len(obj) if type(obj) is dict else -1
        costs = obj.get("costs") if members >= 0 else None
        if type(costs) is list:
            for c in costs:
                if type(c) is dict:
                    members += len(c)
        if members < 0 or count(line, b":") != members:
            repeated = repeated_keys(line, obj)
            if repeated:
                for at in repeated:
                    errors.add(f"{place(n, at)}: {REPEATED_KEY}")
                continue
        items.append((n, obj))
    return items


def _jsonl_problem(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start + 1:,} of the line: 0x{line[bad.start]:02X}"
    # A line is one line: orjson's "line 2" is its end (the newline was read).
    at = f"column {exc.colno}" if exc.lineno == 1 else "the end of the line"
    return f"not valid JSON at {at}: {_json_message(exc)}"
