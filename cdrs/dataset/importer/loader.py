"""The loader: the whole import, the legs checked here or in worker processes and written
by a writer thread."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from cdrs.dataset.importer.errors import DatasetError, Errors, Place, jsonl_place, main_place
from cdrs.dataset.importer.legs import LegChecker
from cdrs.dataset.importer.passwords import hash_passwords
from cdrs.dataset.importer.pg import cluster_session, lock_leg_tables, pg_empty, pg_session
from cdrs.dataset.importer.pg_bulk import (
    Payloads,
    PgBulkWriter,
    bulk_payloads,
    repeated_legs,
    uid_hashes,
)
from cdrs.dataset.importer.pg_staged import PgStagedWriter
from cdrs.dataset.importer.processes import cores, quiet_worker
from cdrs.dataset.importer.reading import (
    LineTooLong,
    parse_lines,
    read_chunks,
    read_main,
    size_left,
)
from cdrs.dataset.importer.sections import TOP_LEVEL_KEYS, check_objects, write_objects
from cdrs.dataset.importer.sqlite import SqliteWriter
from cdrs.dataset.importer.tree import check_tree
from cdrs.dataset.importer.values import show
from cdrs.dataset.importer.writing import batch_totals, database_errors
from enswitch.db import write_transaction

ERROR_LIMIT = 100
BATCH_SIZE = 10_000
# Below this many legs, an empty PostgreSQL store is loaded like a non-empty one: the
# index rebuild only pays for itself on large loads.
BULK_MIN_LEGS = 50_000


@dataclass
class ImportResult:
    counts: dict[str, int] = field(default_factory=dict)
    legs: int = 0
    archived_legs: int = 0
    costs: int = 0
    seconds: float = 0.0
    legs_seconds: float = 0.0
    method: str = ""

    @property
    def legs_per_second(self) -> float:
        return self.legs / self.legs_seconds if self.legs_seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: what was loaded, how long it took, legs a second (over the legs'
        part, which excludes reading the main file and hashing passwords)."""
        objects = ", ".join(f"{n:,} {name}" for name, n in self.counts.items() if n)
        legs = "no legs"
        if self.legs:
            legs = (
                f"{self.legs:,} legs ({self.archived_legs:,} archived, {self.costs:,} cost "
                f"records) in {self.legs_seconds:.1f} s: {self.legs_per_second:,.0f} legs/s "
                f"[{self.method}]"
            )
        return f"Imported {objects or 'no objects'}; {legs}; {self.seconds:.1f} s in all"


@dataclass
class Progress:
    legs: int  # legs checked so far
    bytes_read: int  # of the JSONL file
    bytes_total: int | None  # None when unknown (a pipe)
    seconds: float


def make_writer(connection: Any, *, bulk: bool | None, expected_legs: int) -> Any:
    if connection.vendor == "sqlite":
        return SqliteWriter(connection)
    if connection.vendor != "postgresql":
        raise DatasetError([f"import_dataset does not support the {connection.vendor} database"])
    cluster_session(connection)
    replica = pg_session(connection)
    if bulk is None:
        bulk = expected_legs >= BULK_MIN_LEGS
    if bulk and pg_empty(connection):
        lock_leg_tables(connection)
        if pg_empty(connection):  # still, now that nobody else can write
            return PgBulkWriter(connection, replica=replica)
    return PgStagedWriter(connection, replica=replica)


# What the worker processes need, set before they are forked (so inherited, not sent).
_WORKER: dict[str, Any] = {}


@dataclass
class _Checked:
    messages: list[str]
    errors: int
    payloads: Payloads | None
    legs: int = 0
    archived: int = 0
    costs: int = 0
    hashes: list[int] = field(default_factory=list)  # of the uniqueids
    deltas: dict = field(default_factory=dict)  # the call totals of the legs


def _check_in_worker(job: tuple[list[tuple[int, bytes]], int]) -> _Checked:
    """Parse, check and format one chunk of JSONL lines, legs numbered from `first`."""
    chunk, first = job
    checker: LegChecker = _WORKER["checker"]
    place: Place = _WORKER["place"]
    errors = Errors(_WORKER["limit"])
    batch = checker.check(parse_lines(chunk, place, errors), place, errors)
    if errors:
        return _Checked(errors.messages, errors.total, None)
    payloads = bulk_payloads(batch, first, _WORKER["raw"])
    return _Checked(
        [],
        0,
        payloads,
        len(batch.rows),
        sum(batch.archived),
        len(batch.costs),
        uid_hashes(batch),
        batch_totals(batch),
    )


def _workers_for(writer: Any, asked: int | None) -> int:
    """Worker processes for the JSONL file: only for the bulk writer (it takes data ready
    for COPY). By default one per core (at most 4) when there are several: the workers
    share the cores with the database's server process, and this process only reads
    lines and passes bytes on. Never more than the cores: more would only take turns."""
    if not isinstance(writer, PgBulkWriter):
        return 0
    if asked is not None:
        return min(asked, cores())
    return min(cores(), 4) if cores() > 1 else 0


class _Loader:
    """The legs' part of an import: batches checked (here or in worker processes) and
    handed to the writer, which runs in a thread so that the database works on one batch
    while the next is checked. After the first error nothing more is written, but the
    rest is still checked, to report every error."""

    def __init__(
        self,
        writer: Any,
        checker: LegChecker,
        errors: Errors,
        progress: Callable[[Progress], None] | None,
        started: float,
    ) -> None:
        self.writer, self.checker, self.errors = writer, checker, errors
        self.progress, self.started = progress, started
        self.checked = 0
        self.read = [0]
        self.size: int | None = None
        threaded = writer is not None and writer.threaded
        self.thread = (
            ThreadPoolExecutor(1, thread_name_prefix="import-writer") if threaded else None
        )
        self.pending: Future[list[str]] | None = None
        self.db_errors = database_errors()

    # Writing, one batch at a time in the writer thread.

    def _collect(self) -> None:
        if self.pending is None:
            return
        try:
            for message in self.pending.result():
                self.errors.add(message)
        except self.db_errors as exc:
            self.errors.add(f"cdrs: the database refused a batch of legs: {exc}".strip())
            self.writer = None  # the transaction is lost: check on, write no more
        self.pending = None

    def _submit(self, write: Callable[..., list[str]], *args: Any) -> None:
        self._collect()
        if self.writer is None or self.errors:
            return
        if self.thread is None:
            for message in write(*args):
                self.errors.add(message)
        else:
            self.pending = self.thread.submit(write, *args)

    def _report(self) -> None:
        if self.progress is not None:
            seconds = time.monotonic() - self.started
            self.progress(Progress(self.checked, self.read[0], self.size, seconds))

    # Reading and checking.

    def load(
        self,
        doc_legs: list[Any],
        cdrs: BinaryIO | None,
        name: str,
        size: int,
        workers: int | None,
    ) -> None:
        # Nothing in a batch forms a reference cycle; the collector would only walk the
        # batch's objects over and over.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for i in range(0, len(doc_legs), size):
                items = list(enumerate(doc_legs[i : i + size], start=i))
                self._check_here(items, main_place)
            if cdrs is not None:
                self.size = size_left(cdrs)
                chunks = read_chunks(cdrs, size, self.read)
                self._collect()  # no write in flight when the workers are forked
                workers = _workers_for(self.writer, workers)
                place = jsonl_place(name)
                try:
                    if workers:
                        self._load_in_workers(chunks, name, workers)
                    else:
                        for chunk in chunks:
                            self._check_here(parse_lines(chunk, place, self.errors), place)
                except LineTooLong as exc:
                    limit = settings.ENSWITCH_IMPORT_MAX_LINE_BYTES
                    self.errors.add(
                        f"{place(exc.line, '')}: longer than ENSWITCH_IMPORT_MAX_LINE_BYTES "
                        f"({limit:,} bytes); reading stopped there"
                    )
            self._collect()
        except BaseException:
            self._cancel()
            raise
        finally:
            if collecting:
                gc.enable()
            if self.thread is not None:
                self.thread.shutdown(wait=True)

    def _cancel(self) -> None:
        """Interrupted or failing: stop the statement the writer thread may be waiting on
        (a lock, say), so that the transaction can be rolled back at once."""
        if self.pending is None or self.writer is None:
            return
        raw = self.writer.raw
        with contextlib.suppress(Exception):
            if hasattr(raw, "cancel_safe"):
                raw.cancel_safe(timeout=5)
            else:
                raw.interrupt()

    def _check_here(self, items: list[tuple[int, Any]], place: Place) -> None:
        batch = self.checker.check(items, place, self.errors)
        self.checked += len(items)
        if batch.rows and self.writer is not None:
            self._submit(self.writer.write, batch)
        self._report()

    def _load_in_workers(
        self, chunks: Iterator[list[tuple[int, bytes]]], name: str, workers: int
    ) -> None:
        place = jsonl_place(name)
        _WORKER.update(
            checker=self.checker, place=place, limit=self.errors.limit, raw=self.writer.raw
        )
        # Forked before any thread of this import starts; the workers leave through
        # os._exit, so the database connection they inherit is never touched by them.
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=quiet_worker)
        try:
            inflight: deque[tuple[list[tuple[int, bytes]], int, Any]] = deque()
            for chunk in chunks:
                first = self.writer.reserve(len(chunk)) if self.writer is not None else 0
                inflight.append(
                    (chunk, first, pool.apply_async(_check_in_worker, ((chunk, first),)))
                )
                while len(inflight) > 2 * workers:
                    self._write_checked(*inflight.popleft(), place)
            while inflight:
                self._write_checked(*inflight.popleft(), place)
        finally:
            pool.terminate()
            pool.join()
            _WORKER.clear()

    def _write_checked(
        self, chunk: list[tuple[int, bytes]], first: int, result: Any, place: Place
    ) -> None:
        checked: _Checked = result.get()
        self.checked += len(chunk)
        for message in checked.messages:
            self.errors.add(message)
        self.errors.total += checked.errors - len(checked.messages)
        if checked.payloads is not None and self.writer is not None:
            self._submit(self._write_payloads, checked, chunk, first, place)
        self._report()

    def _write_payloads(
        self, checked: _Checked, chunk: list[tuple[int, bytes]], first: int, place: Place
    ) -> list[str]:
        writer: PgBulkWriter = self.writer
        found = writer.write_payloads(
            checked.payloads, first, first + len(chunk) - 1, checked.hashes
        )
        if found is not None:
            # Rare: read the chunk again to say where.
            batch = self.checker.check(parse_lines(chunk, place, Errors(0)), place, Errors(0))
            return repeated_legs(batch, found)
        writer.counts.legs += checked.legs
        writer.counts.archived += checked.archived
        writer.counts.costs += checked.costs
        writer.add_totals(checked.deltas)
        return []


def import_dataset(
    source: BinaryIO | Mapping[str, Any] | None = None,
    *,
    source_name: str = "-",
    cdrs: BinaryIO | None = None,
    cdrs_name: str = "cdrs.jsonl",
    batch_size: int = BATCH_SIZE,
    error_limit: int = ERROR_LIMIT,
    progress: Callable[[Progress], None] | None = None,
    bulk: bool | None = None,
    workers: int | None = None,
) -> ImportResult:
    """Check and load a dataset: `source` (the main file, as a binary stream or an
    already parsed dict) and/or `cdrs` (a binary stream of JSONL legs).

    Raises DatasetError, having written nothing, when anything is wrong. `bulk`: on
    PostgreSQL, force (True) or forbid (False) the bulk way into an empty store; by
    default it is used for loads of BULK_MIN_LEGS legs or more. `workers`: processes
    that check the JSONL legs in the bulk way (0: this process; default: one per core
    when there are several)."""
    started = time.monotonic()
    errors = Errors(error_limit)
    doc = read_main(source, source_name)
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            errors.add(f"{key}: unknown section (expected: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    doc_legs = doc.get("cdrs")
    if doc_legs is None:
        doc_legs = []
    elif type(doc_legs) is not list:
        errors.add(f"cdrs: must be a list, not {show(doc_legs)}")
        doc_legs = []
    result = ImportResult()
    connection = connections[DEFAULT_DB_ALIAS]

    with write_transaction():
        objects = check_objects(doc, errors)
        tree = check_tree(objects.items["customers"], errors)
        if not errors:
            hashes = hash_passwords(objects.items["users"])
            result.counts = write_objects(objects, tree, hashes)

        legs_started = time.monotonic()
        writer = None
        if not errors and (doc_legs or cdrs is not None):
            expected = len(doc_legs)
            if cdrs is not None:  # a pipe may bring any number: count it as large
                size = size_left(cdrs)
                expected += BULK_MIN_LEGS if size is None else size // 400
            writer = make_writer(connection, bulk=bulk, expected_legs=expected)
        loader = _Loader(writer, LegChecker(objects.known), errors, progress, started)
        loader.load(doc_legs, cdrs, cdrs_name, batch_size, workers)
        if loader.writer is not None and not errors:
            try:
                for message in writer.finish():
                    errors.add(message)
            except loader.db_errors as exc:
                errors.add(f"cdrs: the database refused the legs: {exc}")
        errors.raise_if_any()
        if writer is not None:
            result.legs = writer.counts.legs
            result.archived_legs = writer.counts.archived
            result.costs = writer.counts.costs
            result.method = writer.method
    result.seconds = time.monotonic() - started
    result.legs_seconds = time.monotonic() - legs_started
    return result
