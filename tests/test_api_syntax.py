"""Section 4 of docs/api.md: parameter syntax (integers, enumerations, strings), rule by
rule and as a property.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests import api_helpers as h
from tests import reference as ref
from tests.api_helpers import (
    BAD_INTEGERS,
    ENUMERATIONS,
    FLAGS,
    INT64_MAX,
    INTEGER_PARAMS,
    LIST,
    MINIMUM,
    STRING_PARAMS,
    ask,
    ids_of,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 4: integers -------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_INTEGERS)
@pytest.mark.parametrize("param", INTEGER_PARAMS)
def test_integer_syntax_is_ascii_digits_with_optional_minus(client, actors, param, value):
    h.assert_invalid(ask(client, actors.owner, **{param: value}), param)


@pytest.mark.parametrize("value", ["+11", " 11", "11 ", "\uff11\uff11", "1_1", "11.0"])
@pytest.mark.parametrize("param", ["customer", "cost_customer"])
def test_customer_ids_are_ascii_integers(client, actors, param, value):
    h.assert_invalid(ask(client, actors.reseller, **{param: value}), param)


def test_leading_zeros_and_minus_zero_are_valid(client, actors):
    make_leg("a", 11, start=5)
    make_leg("b", 11, start=9)
    assert ids_of(client, actors.reseller, recurse=1, start="007") == ["b"]
    assert ids_of(client, actors.reseller, recurse=1, start="-0", end="0000000008") == ["a"]
    assert ids_of(client, actors.reseller, customer="011") == ["a", "b"]
    assert ids_of(client, actors.reseller, customer="00011", cost_customer="0011") == ["a", "b"]


@pytest.mark.parametrize("param", INTEGER_PARAMS)
def test_minus_zero_is_valid_for_every_integer_parameter(client, actors, param):
    h.assert_ok(ask(client, actors.owner, **{param: "-0"}))
    h.assert_ok(ask(client, actors.owner, **{param: "000"}))


@pytest.mark.parametrize(("param", "minimum"), MINIMUM.items())
def test_lower_bounds(client, actors, param, minimum):
    h.assert_invalid(ask(client, actors.owner, **{param: minimum - 1}), param)
    h.assert_invalid(ask(client, actors.owner, **{param: -(2**63)}), param)
    h.assert_ok(ask(client, actors.owner, **{param: minimum}))


@pytest.mark.parametrize("value", ["-1", "2", "10", "-01", "11"])
@pytest.mark.parametrize("param", FLAGS)
def test_flags_are_zero_or_one(client, actors, param, value):
    h.assert_invalid(ask(client, actors.owner, **{param: value}), param)


@pytest.mark.parametrize("value", ["0", "1", "00", "01", "-0"])
@pytest.mark.parametrize("param", FLAGS)
def test_flags_accept_zero_and_one(client, actors, param, value):
    h.assert_ok(ask(client, actors.owner, **{param: value}))


@pytest.mark.parametrize("value", [str(2**63), str(-(2**63) - 1), "9" * 30, "-" + "9" * 30])
@pytest.mark.parametrize("param", [*INTEGER_PARAMS, "customer", "cost_customer"])
def test_beyond_int64_is_400_on_that_parameter(client, actors, param, value):
    h.assert_invalid(ask(client, actors.owner, **{param: value}), param)


@pytest.mark.parametrize("param", [*INTEGER_PARAMS, "customer", "cost_customer"])
def test_integers_of_thousands_of_digits_are_400_not_500(client, actors, param):
    # A POST body may carry such a value (64 KiB are accepted).
    answer = h.post_form(client, LIST, {**actors.owner.creds, param: "1" + "0" * 5000})
    h.assert_invalid(answer, param)


def test_archive_of_thousands_of_digits_without_privilege_is_400(client, actors):
    who = h.actor(actors.reseller.customer, "noarchive", ["cdrs"])
    answer = h.post_form(client, LIST, {**who.creds, "archive": "1" + "0" * 5000})
    h.assert_invalid(answer, "archive")


def test_int64_maximum_is_valid_where_there_is_no_upper_bound(client, actors):
    make_leg("a", 11, start=100)
    make_leg("b", 11, start=200)
    make_leg("future", 11, start=int(time.time()) + 10**6)
    who, top = actors.reseller, str(INT64_MAX)
    assert ids_of(client, who, recurse=1, offset=top) == []
    assert ids_of(client, who, recurse=1, offset=top, limit=top) == []
    assert ids_of(client, who, recurse=1, offset=top, limit=1) == []
    assert ids_of(client, who, recurse=1, limit=top) == ["a", "b"]
    assert ids_of(client, who, recurse=1, limit=top, offset=1) == ["b"]
    assert ids_of(client, who, recurse=1, start=top) == []
    assert ids_of(client, who, recurse=1, end=top) == ["a", "b", "future"]
    assert ids_of(client, who, recurse=1, talktime_maximum=top) == ["a", "b"]
    assert ids_of(client, who, recurse=1, talktime_minimum=top) == []
    assert ids_of(client, who, recurse=1, invoice=top) == []
    assert ids_of(client, who, recurse=1, peer=top) == []


def test_start_after_end_is_an_empty_list(client, actors):
    make_leg("a", 11, start=150)
    assert ids_of(client, actors.reseller, recurse=1, start=200, end=100) == []
    assert ids_of(client, actors.reseller, recurse=1, start=150, end=150) == ["a"]


# --- section 4: enumerations and strings ---------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("callername_match", "Start"),
        ("callername_match", "CONTAINS"),
        ("smatch", "Contains"),
        ("smatch", "begins"),
        ("cmatch", "EXACT"),
        ("cmatch", "contains "),
        ("dmatch", "End"),
        ("dmatch", "ends"),
        ("direction", "IN"),
        ("direction", "inbound"),
        ("direction", "in "),
        ("sort", "Start"),
        ("sort", " start"),
        ("sort", "invoice"),
        ("sort", "card"),
        ("sort", "archived"),
        ("sort", "callername"),
        ("sort", "cost_including_tax"),
        ("customer", "All"),
        ("customer", "SYSTEM"),
        ("customer", "all "),
        ("customer", "scustomer"),
        ("customer", "card"),
        ("customer", "prepaid_calls"),
        ("cost_customer", "Card"),
        ("cost_customer", "all"),
        ("cost_customer", "system"),
        ("cost_customer", "prepaid"),
        ("cost_customer", "dcustomer"),
    ],
)
def test_enumerations_are_case_sensitive_and_closed(client, actors, param, value):
    h.assert_invalid(ask(client, actors.owner, **{param: value}), param)


@pytest.mark.parametrize(
    ("param", "value"), [(p, w) for p, words in ENUMERATIONS.items() for w in words]
)
def test_every_listed_word_is_accepted(client, actors, param, value):
    h.assert_ok(ask(client, actors.owner, **{param: value}))


@pytest.mark.parametrize("param", list(ENUMERATIONS))
def test_enumerations_with_nul_or_overlong_are_400(client, actors, param):
    h.assert_invalid(ask(client, actors.owner, **{param: "start\x00"}), param)
    h.assert_invalid(ask(client, actors.owner, **{param: "s" * 300}), param)


@pytest.mark.parametrize("value", ["x" * 256, "\u00e9" * 256, "\U0001f600" * 256, "a" * 5000])
@pytest.mark.parametrize("param", STRING_PARAMS)
def test_strings_over_255_code_points_are_400(client, actors, param, value):
    h.assert_invalid(ask(client, actors.owner, **{param: value}), param)


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "abc\x00"])
@pytest.mark.parametrize("param", STRING_PARAMS)
def test_strings_with_nul_are_400(client, actors, param, value):
    h.assert_invalid(ask(client, actors.owner, **{param: value}), param)


@pytest.mark.parametrize("value", ["x" * 255, "\u00e9" * 255, "\U0001f600" * 255, "\u20ac" * 255])
@pytest.mark.parametrize("param", STRING_PARAMS)
def test_strings_of_255_code_points_are_valid(client, actors, param, value):
    h.assert_ok(ask(client, actors.owner, **{param: value}))


def test_255_multibyte_code_points_match(client, actors):
    text = "\U0001f600" * 254 + "\u00c9"
    make_leg("a", 11, snumber=text, callername=text, callid=text)
    make_leg("b", 11, snumber="x", callername="x")
    who = actors.reseller
    assert ids_of(client, who, recurse=1, snumber=text, smatch="exact") == ["a"]
    assert ids_of(client, who, recurse=1, callid=text) == ["a"]
    folded = "\U0001f600" * 254 + "\u00e9"
    assert ids_of(client, who, recurse=1, callername_number=folded, callername_match="exact") == [
        "a"
    ]


# --- section 4, as a property ---------------------------------------------------------

INTEGERISH = st.one_of(
    st.from_regex(r"-?0*[0-9]{1,21}", fullmatch=True),
    st.text(alphabet="-+0123456789 _.e\u0661\uff11\u00b2\u09e7", max_size=6),
    st.text(max_size=4),
)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=INTEGERISH, param=st.sampled_from([*MINIMUM, *FLAGS]))
def test_integer_parameters_follow_section_4(client, actors, param, value):
    number = ref.parse_integer(value)
    if param in FLAGS:
        valid = value == "" or number in (0, 1)
    else:
        valid = value == "" or (number is not None and number >= MINIMUM[param])
    answer = ask(client, actors.owner, **{param: value})
    if valid:
        h.assert_ok(answer)
    else:
        h.assert_invalid(answer, param)
