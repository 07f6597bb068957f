"""import_dataset under mistaken and hostile files: a clear message with its place, never
a traceback, nothing written (issue 12). Real processes: tests/test_commands_process.py."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from cdrs.dataset.importer import DatasetError, import_dataset
from cdrs.management.commands import _cli
from customers.models import Customer, User
from tests.test_import import EXAMPLE, WAYS, a_leg, errors_of, example, load, snapshot

pytestmark = pytest.mark.django_db

LEG_FIELDS = (
    "uniqueid",
    "callid",
    "start",
    "end",
    "talktime",
    "status",
    "direction",
    "stype",
    "snumber",
    "ctype",
    "cnumber",
    "dtype",
    "dnumber",
    "callername",
    "scustomer",
    "dcustomer",
    "peer",
    "invoice",
    "card",
    "archived",
    "costs",
)
COST_FIELDS = ("customer", "card", "cost", "tax", "currency")
ODD_VALUES = {"list": [], "object": {"a": 1}, "list of objects": [{"a": 1}]}


def main_errors(data: bytes, **kw: Any) -> list[str]:
    before = snapshot()
    with pytest.raises(DatasetError) as caught:
        import_dataset(io.BytesIO(data), source_name="data.json", **kw)
    assert snapshot() == before
    return caught.value.lines()


def jsonl_errors(lines: bytes, **kw: Any) -> list[str]:
    before = snapshot()
    with pytest.raises(DatasetError) as caught:
        import_dataset(cdrs=io.BytesIO(lines), cdrs_name="legs.jsonl", **kw)
    assert snapshot() == before
    return caught.value.lines()


# --- 3. every field is type-checked -------------------------------------------------------


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
@pytest.mark.parametrize("name", LEG_FIELDS)
def test_a_leg_field_of_the_wrong_type_is_an_error_with_its_place(name, odd):
    load(example(cdrs=[]))
    if name == "costs" and odd == []:
        return  # a leg without cost records
    leg = a_leg("t.1")
    leg[name] = odd
    messages = errors_of(example(cdrs=[leg]))
    assert messages
    assert all(m.startswith(f"cdrs[0].{name}") for m in messages), messages


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
@pytest.mark.parametrize("name", COST_FIELDS)
def test_a_cost_field_of_the_wrong_type_is_an_error_with_its_place(name, odd):
    load(example(cdrs=[]))
    cost = {"customer": 1, "cost": "0.1", "currency": "USD", name: odd}
    if name == "card":
        cost.pop("customer")
    messages = errors_of(None, [a_leg("t.1", costs=[cost])])
    assert messages
    assert all(m.startswith("cdrs.jsonl line 1: costs[0]") for m in messages)


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
def test_a_direction_that_is_not_a_string_in_jsonl_every_way(way, odd):
    load(example(cdrs=[]))
    legs = [a_leg(f"t.{i}") for i in range(30)]
    legs[17]["direction"] = odd
    messages = errors_of(None, legs, batch_size=10, **way)
    assert messages == [
        f"cdrs.jsonl line 18: direction: {_shown(odd)} is not one of: in, out, internal"
    ]


def _shown(odd: Any) -> str:
    return "an object" if isinstance(odd, dict) else "a list"


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
@pytest.mark.parametrize(
    ("section", "name"),
    [(s, f) for s, objs in EXAMPLE.items() if s != "cdrs" for f in objs[0] if f != "password"],
)
def test_an_object_field_of_the_wrong_type_is_an_error_with_its_place(section, name, odd):
    if name in ("features", "privileges") and odd == []:
        return  # none
    data = example()
    data[section][0][name] = odd
    messages = errors_of(data)
    assert any(m.startswith(f"{section}[0].{name}: ") for m in messages), messages


# --- 1. start and end within what dates can print -----------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"start": -(10**14)}, "cdrs[0].start: -100000000000000 is not a Unix time from 0"),
        ({"start": -1}, "cdrs[0].start: -1 is not a Unix time from 0 (1970-01-01)"),
        (
            {"start": 1_704_067_200_000, "end": 1_704_067_200_030},
            "cdrs[0].start: 1704067200000 is not a Unix time from 0 (1970-01-01) to "
            "253402300799 (9999-12-31 23:59:59 UTC): milliseconds?",
        ),
        ({"end": 253_402_300_800}, "cdrs[0].end: 253402300800 is not a Unix time"),
    ],
)
def test_absurd_start_and_end_are_refused(changes, message):
    load(example(cdrs=[]))
    messages = errors_of(example(cdrs=[a_leg("t.1", **changes)]))
    assert messages[0].startswith(message), messages


def test_the_last_second_of_9999_is_accepted():
    load(example(cdrs=[a_leg("t.1", start=253_402_300_700, end=253_402_300_799)]))


# --- 9. passwords are never shown; an empty one is refused ------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (123456789, "users[0].password: must be a string, not a number"),
        ({"secret": "hunter2"}, "users[0].password: must be a string, not an object"),
        ("", "users[0].password: must not be empty"),
    ],
)
def test_a_bad_password_is_refused_without_showing_it(password, message):
    data = example()
    data["users"][0]["password"] = password
    messages = errors_of(data)
    assert messages == [message]
    assert "123456789" not in " ".join(messages)
    assert "hunter2" not in " ".join(messages)


# --- 9. messages that say what is wrong, where -------------------------------------------


def test_invalid_utf8_is_reported_at_its_byte():
    data = bytearray(orjson.dumps(example(), option=orjson.OPT_INDENT_2))
    at = data.index(b"Carrier A")
    data[at] = 0xFF
    line = data.count(b"\n", 0, at) + 1
    column = at - data.rfind(b"\n", 0, at)
    (message,) = main_errors(bytes(data))
    assert message == (
        f"data.json: not valid UTF-8 at byte {at + 1:,} (line {line}, byte {column} of the "
        "line): 0xFF"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(encoding):
    data = orjson.dumps(example()).decode().encode(encoding)
    assert main_errors(data) == [
        "data.json: is UTF-16 text (a byte-order mark or NUL bytes at the start); save it as UTF-8"
    ]


def test_a_utf8_byte_order_mark_is_named():
    (message,) = main_errors(b"\xef\xbb\xbf" + orjson.dumps(example()))
    assert "byte-order mark" in message


def test_a_number_too_long_to_read():
    data = orjson.dumps(example()).replace(b'"id":1,', b'"id":' + b"9" * 5000 + b",", 1)
    (message,) = main_errors(data)
    assert message.startswith("data.json: not valid JSON at line 1 column ")
    assert message.endswith("a number too large (more digits than a 64-bit integer holds)")


def test_an_integer_beyond_64_bits_is_named_as_such():
    data = orjson.dumps(example()).replace(b'"id":1,', b'"id":18446744073709551616,', 1)
    assert (
        "rate_plans[0].id: must be an integer, not a number too large for a 64-bit integer "
        "(about 1.84e+19)"
    ) in main_errors(data)


def test_a_jsonl_error_is_placed_in_its_line_only():
    load(example(cdrs=[]))
    lines = orjson.dumps(a_leg("j.1")) + b"\n" + b'{"uniqueid": "j.2",\n' + b'{"a" 1}\n'
    first, second = jsonl_errors(lines)
    assert first.startswith("legs.jsonl line 2: not valid JSON at the end of the line: ")
    assert second.startswith("legs.jsonl line 3: not valid JSON at column 6: ")
    assert "line 2 column" not in first + second
    assert "line 1 column" not in first + second


def test_invalid_utf8_in_a_jsonl_line():
    load(example(cdrs=[]))
    lines = (
        orjson.dumps(a_leg("j.1"))
        + b"\n"
        + orjson.dumps(a_leg("j.\xe9")).replace(b"\xc3\xa9", b"\xe9")
    )
    (message,) = jsonl_errors(lines)
    assert message == "legs.jsonl line 2: not valid UTF-8 at byte 16 of the line: 0xE9"


# --- 10. repeated keys ---------------------------------------------------------------------


def test_a_repeated_top_level_key_is_refused():
    data = orjson.dumps(example())[:-1] + b',"customers":[]}'
    assert main_errors(data) == ["customers: " + _REPEATED]
    assert not Customer.objects.exists()


def test_a_repeated_key_in_an_object_is_refused_with_its_place():
    data = orjson.dumps(example()).replace(
        b'"enabled":true}],"users"', b'"enabled":true, "id" :999999}],"users"'
    )
    assert main_errors(data) == ["customers[0].id: " + _REPEATED]
    assert not Customer.objects.filter(id=999999).exists()


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
def test_a_repeated_key_in_a_jsonl_leg_every_way(way):
    load(example(cdrs=[]))
    legs = [orjson.dumps(a_leg(f"r.{i}")) for i in range(25)]
    legs[7] = legs[7][:-1] + b',"scustomer":1}'
    cost = b'"costs":[{"customer":1,"cost":"0.1","currency":"USD","cost":"9"}]'
    legs[20] = legs[20][:-1] + b"," + cost + b"}"
    messages = jsonl_errors(b"\n".join(legs), batch_size=10, **way)
    assert messages == [
        "legs.jsonl line 8: scustomer: " + _REPEATED,
        "legs.jsonl line 21: costs[0].cost: " + _REPEATED,
    ]


def test_keys_that_look_repeated_inside_strings_are_fine():
    load(example(cdrs=[]))
    leg = a_leg("s.1", callername='say "a": "b", "x" : 1')
    text = orjson.dumps(leg).replace(b'"status":', b'"status" :')
    load(None, None)
    import_dataset(cdrs=io.BytesIO(text), cdrs_name="legs.jsonl")
    from cdrs.models import Leg

    assert Leg.objects.get(uniqueid="s.1").callername == 'say "a": "b", "x" : 1'


_REPEATED = "this key appears more than once in its object"


# --- 7. bounds -----------------------------------------------------------------------------


def test_a_main_file_larger_than_the_limit_is_refused_before_it_is_read(settings):
    settings.ENSWITCH_IMPORT_MAX_FILE_BYTES = 1000
    data = orjson.dumps(example(cdrs=[a_leg(f"b.{i}") for i in range(20)]))

    class Pipe(io.RawIOBase):
        """A stream of unknown size, like a pipe, that counts what is read from it."""

        def __init__(self) -> None:
            self.data, self.taken = io.BytesIO(data), 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            chunk = self.data.read(n)
            self.taken += len(chunk)
            return chunk

    pipe = Pipe()
    message = "larger than ENSWITCH_IMPORT_MAX_FILE_BYTES (1,000 bytes); put the legs in a JSONL"
    assert message in main_errors(data)[0]
    with pytest.raises(DatasetError) as caught:
        import_dataset(pipe, source_name="-")
    assert caught.value.lines() == [f"-: {message} file (--cdrs), which may be of any size"]
    assert pipe.taken <= 1001


def test_a_jsonl_line_longer_than_the_limit_is_refused(settings):
    settings.ENSWITCH_IMPORT_MAX_LINE_BYTES = 300
    load(example(cdrs=[]))
    lines = [orjson.dumps(a_leg(f"l.{i}")) for i in range(5)]
    lines[3] = orjson.dumps(a_leg("l.3", callername="x" * 200, cnumber="1" * 200))
    messages = jsonl_errors(b"\n".join(lines))
    assert messages == [
        "legs.jsonl line 4: longer than ENSWITCH_IMPORT_MAX_LINE_BYTES (300 bytes); reading "
        "stopped there"
    ]


def test_a_jsonl_line_of_exactly_the_limit_is_read(settings):
    line = orjson.dumps(a_leg("l.1")) + b"\n"
    settings.ENSWITCH_IMPORT_MAX_LINE_BYTES = len(line)
    load(example(cdrs=[]))
    import_dataset(cdrs=io.BytesIO(line * 1), cdrs_name="legs.jsonl")


# --- 8. numeric options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "-1"], "--workers: -1 is out of range; give 0 to 1,000"),
        (["--batch-size", "0"], "--batch-size: 0 is out of range"),
        (["--batch-size", str(2**70)], "--batch-size: .* is out of range"),
        (["--max-errors", "-3"], "--max-errors: -3 is out of range"),
    ],
)
def test_bad_numeric_options_are_refused(args, message, tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(orjson.dumps(example()))
    with pytest.raises(CommandError, match=message):
        call_command("import_dataset", str(path), *args)
    assert not Customer.objects.exists()


def test_workers_are_capped_at_the_cores(tmp_path):
    load(example(cdrs=[]))
    path = tmp_path / "legs.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(a_leg(f"w.{i}")) for i in range(30)))
    err = io.StringIO()
    call_command(
        "import_dataset", "--cdrs", str(path), "--workers", "200", stdout=io.StringIO(), stderr=err
    )
    assert f"--workers 200: using {_cli.cpus()} (the cores here)" in err.getvalue()
    from cdrs.dataset.importer.loader import _workers_for
    from cdrs.dataset.importer.pg_bulk import PgBulkWriter

    assert _workers_for(object.__new__(PgBulkWriter), 200) == _cli.cpus()


# --- 4. database failures: one line, exit 1 -------------------------------------------------


def test_a_read_only_database_is_one_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(orjson.dumps(example()))
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SET TRANSACTION READ ONLY")
        else:
            cur.execute("PRAGMA query_only = ON")
    try:
        with pytest.raises(CommandError) as caught:
            call_command("import_dataset", str(path), stdout=io.StringIO())
    finally:
        if connection.vendor == "sqlite":
            with connection.cursor() as cur:
                cur.execute("PRAGMA query_only = OFF")
    message = str(caught.value)
    assert "is read-only" in message
    assert message.endswith("nothing was written")
    assert "\n" not in message
    assert caught.value.returncode == 1


def test_database_problems_are_named():
    import sqlite3

    locked = sqlite3.OperationalError("database is locked")
    assert _cli.database_problem(locked)[0].startswith("the SQLite database is locked")
    assert _cli.database_problem(locked)[1] is True
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    assert _cli.database_problem(readonly) == (
        "the SQLite database is read-only (the file, its directory or the file system): "
        "attempt to write a readonly database",
        False,
    )


def test_nothing_of_a_refused_file_reaches_the_users_table():
    data = example()
    data["users"][0]["password"] = ""
    with pytest.raises(DatasetError):
        load(data)
    assert not User.objects.exists()
