"""archive_cdrs and generate_dataset under mistakes: refused before anything moves, one
line, never a traceback (issue 12). Real processes: tests/test_commands_process.py."""

from __future__ import annotations

import fcntl
import io
import os
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from cdrs import archive
from cdrs.management.commands import _cli
from cdrs.management.commands.archive_cdrs import EXIT_LOCKED
from cdrs.management.commands.archive_cdrs import Command as ArchiveCommand
from cdrs.models import ArchivedLeg, Leg
from tests.test_archive import T0, make_legs, rows
from tests.test_archive import world as world  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.django_db


def archive_cdrs(*args: str) -> str:
    out = io.StringIO()
    call_command("archive_cdrs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- 1. cut-offs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--before", "1704067200000"],
        ["--before", "1704067200000", "--dry-run"],
        ["--before", str(10**15)],
        ["--older-than", "1000000000000"],
        ["--older-than", str(int(time.time()) // 86400 + 1)],
        ["--restore", "--between", "0", "1704067200000"],
    ],
)
def test_a_cut_off_out_of_range_moves_nothing(world, args):
    make_legs(world, [0, 1, 2])
    before = rows()
    with pytest.raises(CommandError) as caught:
        archive_cdrs(*args)
    assert caught.value.returncode == 1
    assert "\n" not in str(caught.value)
    assert rows() == before


def test_milliseconds_are_named_with_the_value_meant(world):
    with pytest.raises(CommandError) as caught:
        archive_cdrs("--before", "1704067200000")
    message = str(caught.value)
    assert message.startswith(
        "--before 1704067200000 is not a Unix time in seconds from 0 (1970-01-01) to a day "
        "from now ("
    )
    assert message.endswith("milliseconds? In seconds that is 1704067200 (2024-01-01 00:00:00 UTC)")


def test_a_cut_off_up_to_a_day_ahead_is_accepted_and_the_dry_run_shows_it(world):
    make_legs(world, [0, 1])
    ahead = int(time.time()) + 86000
    shown = archive_cdrs("--before", str(ahead), "--dry-run")
    assert shown.startswith(f"dry run: would move 2 legs that started before {ahead} (")
    assert Leg.objects.count() == 2


def test_legs_with_starts_no_date_can_show_do_not_break_dry_runs_or_runs(world):
    """Legs stored before the importer refused such starts (or written by other means)."""
    legs = make_legs(world, [0, 1])
    Leg.objects.filter(id=legs[0].id).update(start=-(10**14), end=-(10**14) + 1000)
    shown = archive_cdrs("--before", str(T0 + 10), "--dry-run")
    assert "starts from -100000000000000 to 1700000001 (2023-11-14" in shown
    summary = archive_cdrs("--before", str(T0 + 10))
    assert summary.startswith("archived 2 legs and ")
    assert ArchivedLeg.objects.count() == 2


# --- 8. numeric options --------------------------------------------------------------------


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL connections")
def test_jobs_are_capped_by_cpus_and_free_connections(settings):
    command = ArchiveCommand(stdout=io.StringIO(), stderr=io.StringIO())
    command.verbosity = 1
    free = _cli.free_connections("default")
    assert 0 < free < 10_000
    assert command._jobs(100, "default") == max(1, min(_cli.cpus(), free - 10))
    assert "--jobs 100: using " in command.stderr._out.getvalue()
    settings.ENSWITCH_SPARE_CONNECTIONS = free
    assert command._jobs(100, "default") == 1


# --- 2. a lock held too long is a failure, not a skipped run ---------------------------------


def _hold(since: float | None):
    """Hold the archive lock as another program would; on SQLite with the holder's line
    (pid, time) as archive_cdrs writes it."""
    if connection.vendor == "postgresql":
        from tests.test_archive import _hold_lock_elsewhere

        return _hold_lock_elsewhere()
    path = archive._lock_path(connection)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    if since is not None:
        os.pwrite(fd, f"4242 {since:.0f}\n".encode(), 0)
    return lambda: os.close(fd)


def test_a_lock_held_briefly_is_a_skipped_run(world):
    release = _hold(time.time() - 60)
    try:
        with pytest.raises(CommandError, match="another archive_cdrs is running") as caught:
            archive_cdrs("--before", str(T0))
    finally:
        release()
    assert caught.value.returncode == EXIT_LOCKED


def test_a_lock_held_past_the_limit_is_a_failure_naming_its_holder(world, settings):
    settings.ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS = 3600
    if connection.vendor == "postgresql":
        settings.ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS = -1  # the holder's session just began
    release = _hold(time.time() - 7200)
    try:
        with pytest.raises(CommandError) as caught:
            archive_cdrs("--before", str(T0), "--wait", "0.3")
    finally:
        release()
    message = str(caught.value)
    assert caught.value.returncode == 1
    assert message.startswith("the archive lock has been held for ")
    assert "nothing is being archived" in message
    holder = "held by server process" if connection.vendor == "postgresql" else "by process 4242"
    assert holder in message


def test_the_lock_file_is_owner_only(world, tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3.archive_cdrs.lock"
    path.write_bytes(b"")
    os.chmod(path, 0o644)  # made by an older version
    with archive._file_lock(path, 0):
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert path.read_text().split()[0] == str(os.getpid())
    fresh = tmp_path / "new.lock"
    with archive._file_lock(fresh, 0):
        assert os.stat(fresh).st_mode & 0o777 == 0o600


# --- 6. generate_dataset refuses what import_dataset would ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "/nonexistent/x.json"], "/nonexistent/x.json: No such file or directory"),
        (["--depth", "1000", "--customers", "1200"], "depth: customer .* path of more than"),
        (["--password", ""], "password: 1 to 255 characters"),
        (["--end", str(10**12)], "end: at most 253402300799"),
    ],
)
def test_generate_refuses_clearly(args, message, tmp_path):
    with pytest.raises(CommandError, match=message):
        call_command("generate_dataset", "--legs", "5", *args, stderr=io.StringIO())


def test_generate_leaves_no_file_it_could_not_finish(tmp_path, settings):
    settings.ENSWITCH_IMPORT_MAX_FILE_BYTES = 30_000
    out = tmp_path / "main.json"
    with pytest.raises(CommandError, match="put the legs in --cdrs-out"):
        call_command("generate_dataset", "--legs", "200", "--out", str(out), stderr=io.StringIO())
    assert list(tmp_path.iterdir()) == []
    call_command(
        "generate_dataset",
        "--legs",
        "200",
        "--out",
        str(out),
        "--cdrs-out",
        str(tmp_path / "legs.jsonl"),
        stderr=io.StringIO(),
    )
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legs.jsonl", "main.json"]


# --- 9. no "run again" where running again cannot help --------------------------------------


def test_an_id_clash_does_not_ask_for_a_rerun(world):
    legs = make_legs(world, [0, 1])
    ArchivedLeg.objects.create(
        id=legs[1].id, uniqueid="someone-else", callid="x", start=T0, end=T0,
        direction="in", scustomer=world["a"],
    )  # fmt: skip
    with pytest.raises(CommandError) as caught:
        archive_cdrs("--before", str(T0 + 10))
    message = str(caught.value)
    assert "someone-else" in message
    assert "\n" not in message
    assert "Run the command again" not in message
    assert message.endswith("Running it again will not help until that is resolved.")
