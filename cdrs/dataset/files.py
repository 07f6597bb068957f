"""Dataset files as `generate_dataset` writes them: the main file, and the legs either in
its `cdrs` list or one a line in a JSONL file; streamed, so any number of legs fits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from cdrs.dataset.generator import DatasetGenerator
from cdrs.dataset.options import Options


def _chunks(gen: DatasetGenerator, size: int = 4096) -> Iterator[list[bytes]]:
    dumps = orjson.dumps
    chunk: list[bytes] = []
    for leg in gen.legs():
        chunk.append(dumps(leg))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_dataset(
    out: BinaryIO,
    options: Options | None = None,
    *,
    cdrs_out: BinaryIO | None = None,
    **kwargs: Any,
) -> DatasetGenerator:
    """Write a dataset, streaming the legs: into `out`'s `cdrs` list, or one a line into
    `cdrs_out` (JSONL) when given. One object a line, so that files diff well."""
    gen = DatasetGenerator(options or Options(**kwargs))
    parts = [
        b'"' + name.encode() + b'": [' + b"".join(b"\n" + orjson.dumps(o) + b"," for o in items)
        for name, items in gen.objects().items()
    ]
    # Drop each list's last comma: no trailing commas in JSON.
    out.write(
        b"{\n"
        + b"],\n".join(p.removesuffix(b",") + (b"\n" if p.endswith(b",") else b"") for p in parts)
    )
    if cdrs_out is not None:
        out.write(b"]\n}\n")
        for chunk in _chunks(gen):
            cdrs_out.write(b"\n".join(chunk) + b"\n")
        return gen
    out.write(b'],\n"cdrs": [')
    sep = b"\n"
    for chunk in _chunks(gen):
        out.write(sep + b",\n".join(chunk))
        sep = b",\n"
    out.write(b"\n]\n}\n" if sep != b"\n" else b"]\n}\n")
    return gen
