"""Section 1 of the contract: paths, methods, query strings, bodies, the envelope, HTTP status.

Requests are built byte by byte where it matters (`h.request` sends an exact query
string and an exact body), and some are shaped like the clients seen in the wild.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests import api_helpers as h
from tests import factories as f
from tests.api_helpers import GET, LIST, PATHS, make_leg

pytestmark = pytest.mark.django_db

SIMPLE_PASSWORD = "pw123"  # for clients that build URLs by hand without encoding


@pytest.fixture
def actors():
    a = h.make_actors()
    make_leg("a", 11, start=10, status="answer")
    make_leg("b", 11, start=20, status="busy")
    make_leg("c", 11, start=30, status="answer", archived=True)
    make_leg("x", 21, start=40, status="answer")  # Charlie's
    return a


@pytest.fixture
def simple(actors):
    """A user whose password needs no encoding, for hand-built URLs."""
    return h.actor(actors.customer.customer, "simple", password=SIMPLE_PASSWORD)


def creds_qs(who: h.Actor, sep: str = ";") -> str:
    return h.query(who.creds, sep=sep)


def raw(client, qs: str | bytes, path: str = LIST, method: str = "GET") -> h.Answer:
    return h.request(client, path, method=method, query_string=qs)


# --- paths and methods ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", PATHS["list"])
def test_list_paths_and_methods(client, actors, path, method):
    answer = raw(client, creds_qs(actors.customer), path, method)
    assert answer.status == 200
    assert h.assert_ok(answer) is not None
    assert answer.ids == ["a", "b"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", PATHS["get"])
def test_get_paths_and_methods(client, actors, path, method):
    answer = raw(client, creds_qs(actors.customer) + ";uniqueid=b", path, method)
    assert answer.status == 200
    assert answer.responses == [h.OK]
    assert answer.data["uniqueid"] == "b"


@pytest.mark.parametrize("path", [*PATHS["list"], *PATHS["get"]])
def test_post_bodies_reach_both_spellings_without_redirect(client, actors, path):
    params = {**actors.customer.creds, "uniqueid": "a"}
    for answer in (
        h.post_form(client, path, params),
        h.post_json(client, path, params),
        h.post_multipart(client, path, params),
    ):
        assert answer.status == 200
        assert answer.code == "200", answer


def test_get_ignores_a_body(client, actors):
    # Parameters come from a body only for POST.
    body = h.query(actors.customer.creds, sep="&")
    answer = h.request(client, LIST, body=body, content_type="application/x-www-form-urlencoded")
    h.assert_error(answer, 401)


# --- query strings -------------------------------------------------------------------


def test_semicolons_and_ampersands_mix(client, actors):
    who = actors.customer
    qs = f"auth_username={h.enc(who.user.username)}&auth_password={h.enc(who.password)}"
    assert raw(client, qs + ";status=busy").ids == ["b"]
    assert raw(client, qs + "&status=busy").ids == ["b"]
    mixed = f"status=answer;auth_username=customer&auth_password={h.enc(who.password)};sort=start"
    assert raw(client, mixed + "&descending=1").ids == ["a"]
    assert raw(client, ";;&&" + mixed + "&;descending=1;&").ids == ["a"]


@pytest.fixture
def statuses(actors):
    values = {
        "space": "a b",
        "plus": "a+b",
        "badesc": "%zz",
        "pct": "100%",
        "pct2": "%4",
        "semi": "a;b",
        "amp": "a&b",
        "eq": "a=b",
        "acute": "\u00e9",
        "fffd": "\ufffd",
        "fffd2": "x\ufffdy",
    }
    for uid, status in values.items():
        make_leg(uid, 20, status=status)
    return actors


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (b"a+b", ["space"]),
        (b"a%20b", ["space"]),
        (b"a%2Bb", ["plus"]),
        (b"a%2bb", ["plus"]),
        (b"%zz", ["badesc"]),
        (b"%25zz", ["badesc"]),
        (b"100%", ["pct"]),
        (b"100%25", ["pct"]),
        (b"%4", ["pct2"]),
        (b"a%3Bb", ["semi"]),
        (b"a%26b", ["amp"]),
        (b"a%3Db", ["eq"]),
        (b"a=b", ["eq"]),
        (b"%C3%A9", ["acute"]),
        (b"\xc3\xa9", ["acute"]),  # raw UTF-8, as a hand-built URL sends it
        (b"%FF", ["fffd"]),  # invalid UTF-8 -> U+FFFD
        (b"\xff", ["fffd"]),
        (b"%C3", ["fffd"]),  # a truncated sequence
        (b"%e9", ["fffd"]),  # latin-1, not UTF-8
        (b"x%FFy", ["fffd2"]),
        (b"x%C3y", ["fffd2"]),
        (b"a;b", []),  # `;` separates: status=a, and a key `b` with the empty value
        (b"a&b", []),
    ],
)
def test_query_string_decoding(client, statuses, encoded, expected):
    qs = creds_qs(statuses.owner).encode() + b";customer=20;sort=uniqueid;status=" + encoded
    assert raw(client, qs).ids == expected


def test_a_key_without_equals_has_the_empty_value(client, actors):
    qs = creds_qs(actors.customer)
    assert raw(client, qs + ";status").ids == ["a", "b"]
    assert raw(client, "status;" + qs + ";sort;descending").ids == ["a", "b"]
    assert raw(client, qs + ";status=busy;status").ids == ["a", "b"]  # the last one wins
    h.assert_error(raw(client, "auth_username=customer;auth_password"), 401)
    # An empty key is just an unknown key.
    assert raw(client, qs + ";=busy;=").ids == ["a", "b"]


def test_keys_are_percent_decoded_too(client, actors):
    who = actors.customer
    qs = f"auth%5Fusername={who.user.username};auth_p%61ssword={h.enc(who.password)}"
    assert raw(client, qs + ";st%61tus=busy").ids == ["b"]
    assert raw(client, qs + ";sta+tus=busy").ids == ["a", "b"]  # the key "sta tus"


def test_the_last_repeated_key_wins(client, actors):
    qs = creds_qs(actors.customer)
    assert raw(client, qs + ";status=busy;status=answer").ids == ["a"]
    assert raw(client, qs + ";status=answer&status=busy").ids == ["b"]
    assert raw(client, qs + ";status=busy;status=").ids == ["a", "b"]
    wrong_last = qs + ";auth_password=wrong"
    h.assert_error(raw(client, wrong_last), 401)
    right_last = "auth_password=wrong;" + qs
    assert raw(client, right_last).ids == ["a", "b"]


def test_unknown_keys_are_ignored(client, actors):
    qs = creds_qs(actors.customer)
    expected = raw(client, qs).raw
    noise = [
        "format=xml",
        "format=api",
        "callback=cb",
        "_method=DELETE",
        "_content_type=text/plain",
        "page=2",
        "page_size=1",
        "ordering=-start",
        "search=zzz",
        "fields=uniqueid",
        "csrfmiddlewaretoken=x",
        "Status=busy",
        "STATUS=busy",
        "uniqueid=b",
        "auth_username2=x",
        "cdrs=1",
        "x" * 300 + "=" + "y" * 300,
        "nul%00=1",
    ]
    assert raw(client, qs + ";" + ";".join(noise)).raw == expected
    # cdrs/list parameters are unknown to cdrs/get.
    answer = raw(client, qs + ";uniqueid=a;" + ";".join(noise), GET)
    assert answer.responses == [h.OK]


def test_values_are_never_trimmed(client, actors):
    make_leg("spaced", 11, start=50, status=" busy ")
    qs = creds_qs(actors.customer)
    assert raw(client, qs + ";status=+busy+").ids == ["spaced"]
    assert raw(client, qs + ";status=busy").ids == ["b"]


# --- bodies --------------------------------------------------------------------------


def test_form_body_over_query_string(client, actors):
    who = actors.customer
    answer = h.post_form(client, LIST, {**who.creds, "status": "answer"}, qs="status=busy")
    assert answer.ids == ["a"]
    answer = h.post_form(client, LIST, {"status": "answer"}, qs=creds_qs(who) + ";status=busy")
    assert answer.ids == ["a"]
    # Credentials wrong in the query, right in the body: the body wins.
    bad = h.query({**who.creds, "auth_password": "wrong"})
    assert h.post_form(client, LIST, who.creds, qs=bad).ids == ["a", "b"]
    # ...and the other way round.
    h.assert_error(h.post_form(client, LIST, {"auth_password": "x"}, qs=creds_qs(who)), 401)


def test_form_body_is_parsed_like_a_query_string(client, actors):
    who = actors.customer
    body = (creds_qs(who, sep="&") + ";status=busy;status=answer&sort=start;descending").encode()
    assert h.post_form(client, LIST, body).ids == ["a"]
    body = creds_qs(who).encode() + b";status=a+b&status=%FF;status=\xff"
    make_leg("f", 11, start=50, status="\ufffd")
    assert h.post_form(client, LIST, body).ids == ["f"]


def test_form_body_with_a_charset(client, actors):
    body = creds_qs(actors.customer) + ";status=busy"
    answer = h.request(
        client,
        LIST,
        method="POST",
        body=body,
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
    )
    assert answer.ids == ["b"]


def test_multipart_body_over_query_string(client, actors):
    who = actors.customer
    answer = h.post_multipart(client, LIST, {**who.creds, "status": "answer"}, qs="status=busy")
    assert answer.ids == ["a"]
    answer = h.post_multipart(client, LIST, {"status": "busy"}, qs=creds_qs(who) + ";status=x")
    assert answer.ids == ["b"]
    answer = h.post_multipart(client, LIST, {**who.creds, "status": ["busy", "answer"]})
    assert answer.ids == ["a"]  # the last one wins
    answer = h.post_multipart(client, LIST, {**who.creds, "status": ""}, qs="status=busy")
    assert answer.ids == ["a", "b"]  # the body's empty value: the default


def test_json_body_over_query_string(client, actors):
    who = actors.customer
    answer = h.post_json(client, LIST, {**who.creds, "status": "answer"}, qs="status=busy")
    assert answer.ids == ["a"]
    answer = h.post_json(client, LIST, {"status": "busy"}, qs=creds_qs(who) + ";status=answer")
    assert answer.ids == ["b"]
    # null: not set, even when the query string sets it
    answer = h.post_json(client, LIST, {"status": None}, qs=creds_qs(who) + ";status=answer")
    assert answer.ids == ["a", "b"]
    answer = h.post_json(client, LIST, {**who.creds, "status": ""}, qs="status=busy")
    assert answer.ids == ["a", "b"]


def test_json_strings_are_taken_as_they_are(client, actors):
    for uid, status in [("plus", "a+b"), ("pct", "a%20b"), ("sp", "a b")]:
        make_leg(uid, 11, start=50, status=status)
    who = actors.customer
    assert h.post_json(client, LIST, {**who.creds, "status": "a+b"}).ids == ["plus"]
    assert h.post_json(client, LIST, {**who.creds, "status": "a%20b"}).ids == ["pct"]
    assert h.post_json(client, LIST, {**who.creds, "status": "a b"}).ids == ["sp"]


def test_json_integers_are_their_decimal_text(client, actors):
    who = actors.customer
    assert h.post_json(client, LIST, {**who.creds, "start": 15}).ids == ["b"]
    assert h.post_json(client, LIST, {**who.creds, "limit": 1, "offset": 1}).ids == ["b"]
    assert h.post_json(client, LIST, {**who.creds, "talktime_maximum": -1}).ids == ["a", "b"]
    assert h.post_json(client, LIST, {**who.creds, "start": 0, "end": 15}).ids == ["a"]
    assert h.post_json(client, LIST, {**who.creds, "descending": 1}).ids == ["b", "a"]
    assert h.post_json(client, LIST, {**who.creds, "customer": 11, "recurse": 0}).ids == [
        "a",
        "b",
    ]
    assert h.post_json(client, LIST, '{"start": -0, ' + json.dumps(who.creds)[1:]).ids == [
        "a",
        "b",
    ]
    h.assert_invalid(h.post_json(client, LIST, {**who.creds, "start": -1}), "start")
    h.assert_invalid(h.post_json(client, LIST, {**who.creds, "start": 2**63}), "start")
    h.assert_invalid(h.post_json(client, LIST, {**who.creds, "customer": 21}), "customer")
    # An integer for a string parameter is its text too.
    make_leg("num", 11, start=50, status="486")
    assert h.post_json(client, LIST, {**who.creds, "status": 486}).ids == ["num"]
    answer = h.post_json(client, GET, {**who.creds, "uniqueid": 486})
    h.assert_error(answer, 404, "uniqueid")


def test_json_integer_credentials(client, actors):
    make_leg("n", 11, start=50)
    who = h.actor(actors.customer.customer, "12345", password="678")
    answer = h.post_json(client, LIST, {"auth_username": 12345, "auth_password": 678})
    assert answer.ids == ["a", "b", "n"]
    assert who.user.username == "12345"


@pytest.mark.parametrize(
    "value", [True, False, 1.0, 1.5, 0.0, -1.0, 1e3, [], [1], ["1"], {}, {"a": 1}]
)
@pytest.mark.parametrize("param", ["start", "archive", "status", "customer", "sort", "limit"])
def test_other_json_values_are_400_on_that_parameter(client, actors, param, value):
    answer = h.post_json(client, LIST, {**actors.owner.creds, param: value})
    h.assert_invalid(answer, param)


def test_several_bad_json_values_in_table_order(client, actors):
    payload = {
        **actors.owner.creds,
        "descending": True,
        "status": [],
        "start": 1.5,
        "customer": {},
        "sort": "nope",
        "end": "x",
    }
    h.assert_invalid(
        h.post_json(client, LIST, payload),
        "start",
        "end",
        "customer",
        "status",
        "sort",
        "descending",
    )
    answer = h.post_json(client, GET, {**actors.owner.creds, "customer": True, "uniqueid": [1]})
    h.assert_invalid(answer, "uniqueid", "customer")


def test_a_bad_json_value_replaces_the_query_strings(client, actors):
    qs = creds_qs(actors.owner) + ";start=5"
    h.assert_invalid(h.post_json(client, LIST, {"start": True}, qs=qs), "start")


def test_bad_json_values_wait_for_the_earlier_stages(client, actors):
    h.assert_error(
        h.post_json(client, LIST, {"auth_username": "owner", "auth_password": True}), 401
    )
    h.assert_error(h.post_json(client, LIST, {"auth_username": True, "auth_password": "x"}), 401)
    noarch = h.actor(actors.reseller.customer, "noarch", ["cdrs"])
    h.assert_error(h.post_json(client, LIST, {**noarch.creds, "archive": 1, "start": 1.5}), 402)
    # true is not the integer 1: a 400, not a 402
    h.assert_invalid(h.post_json(client, LIST, {**noarch.creds, "archive": True}), "archive")
    # an unknown key with a bad value is still ignored
    assert h.post_json(client, LIST, {**actors.customer.creds, "nothing": [1.5]}).ids == [
        "a",
        "b",
    ]


def test_json_repeated_key_the_last_one_wins(client, actors):
    creds = json.dumps(actors.customer.creds)[1:-1]
    body = '{"status": "busy", ' + creds + ', "status": "answer"}'
    assert h.post_json(client, LIST, body).ids == ["a"]
    body = '{"status": "busy", ' + creds + ', "status": null}'
    assert h.post_json(client, LIST, body).ids == ["a", "b"]


def test_json_with_a_charset(client, actors):
    body = json.dumps({**actors.customer.creds, "status": "busy"}).encode()
    answer = h.request(
        client, LIST, method="POST", body=body, content_type="application/json; charset=utf-8"
    )
    assert answer.ids == ["b"]


def test_json_integer_of_thousands_of_digits_is_400_on_that_parameter(client, actors):
    body = '{"start": 1' + "0" * 5000 + ", " + json.dumps(actors.owner.creds)[1:]
    h.assert_invalid(h.post_json(client, LIST, body), "start")


@pytest.mark.parametrize("username", ["owner", "nobody"])
def test_credentials_with_lone_surrogates_are_401(client, actors, username):
    body = '{"auth_username": "' + username + '", "auth_password": "\\ud800"}'
    h.assert_error(h.post_json(client, LIST, body), 401)


def test_username_with_a_lone_surrogate_is_401(client, actors):
    body = '{"auth_username": "own\\udfffer", "auth_password": "x"}'
    h.assert_error(h.post_json(client, LIST, body), 401)


def test_string_parameter_with_a_lone_surrogate_is_not_a_500(client, actors):
    body = '{"status": "\\ud800", ' + json.dumps(actors.owner.creds)[1:]
    answer = h.post_json(client, LIST, body)
    assert answer.code in ("200", "400"), answer
    if answer.code == "400":
        h.assert_invalid(answer, "status")


# --- the envelope --------------------------------------------------------------------


def _answers_of_every_kind(client, actors):
    cust = actors.customer
    noarch = h.actor(cust.customer, "noarch", ["cdrs"])
    return {
        200: h.call(client, LIST, **cust.creds),
        400: h.call(client, LIST, **cust.creds, start="x"),
        401: h.call(client, LIST, auth_username="nobody", auth_password="x"),
        402: h.call(client, LIST, **noarch.creds, archive=1),
        404: h.call(client, GET, **cust.creds, uniqueid="nope"),
        "get": h.call(client, GET, **cust.creds, uniqueid="a"),
        "stream": h.call(client, LIST, **cust.creds, limit=0),
        "empty": h.call(client, LIST, **cust.creds, status="none"),
    }


def test_code_is_always_a_json_string(client, actors):
    for kind, answer in _answers_of_every_kind(client, actors).items():
        body = json.loads(answer.raw)
        for e in body["responses"]:
            assert isinstance(e["code"], str), kind
            assert e["code"].isascii(), kind
            assert e["code"].isdigit(), kind
            assert isinstance(e["key"], str), kind
            assert isinstance(e["message"], str), kind
            assert set(e) == {"code", "key", "message"}, kind


def test_go_style_client_reads_code_as_a_quoted_number(client, actors):
    # type Response struct { Code int `json:"code,string"`; Key, Message string }
    for kind, answer in _answers_of_every_kind(client, actors).items():
        text = answer.raw.decode("utf-8")
        body = json.loads(text)
        code = body["responses"][0]["code"]
        assert f'"code":"{code}"' in text.replace(" ", ""), kind
        assert int(code) in (200, 400, 401, 402, 403, 404), kind


def test_data_is_a_list_an_object_or_absent(client, actors):
    answers = _answers_of_every_kind(client, actors)
    assert answers[200].data == h.assert_ok(answers[200])
    assert isinstance(answers[200].data, list)
    assert answers["stream"].data == answers[200].data
    assert answers["empty"].body == {"responses": [h.OK], "data": []}
    assert isinstance(answers["get"].data, dict)
    for kind in (400, 401, 402, 404):
        assert set(answers[kind].body) == {"responses"}, kind


@pytest.mark.parametrize(
    "accept", ["", "text/html", "application/xml", "*/*", "application/json", "text/plain"]
)
def test_content_type_is_json_utf8(client, actors, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    who = actors.customer
    for qs in [
        creds_qs(who),
        creds_qs(who) + ";limit=0",
        creds_qs(who) + ";start=x",
        "auth_username=x",
    ]:
        response = client.generic("GET", LIST, QUERY_STRING=qs, **headers)
        assert response["Content-Type"] == "application/json; charset=utf-8", qs
        h.decode(response)  # a stream must be read to its end (or closed)
    response = client.generic("GET", GET, QUERY_STRING=creds_qs(who) + ";uniqueid=zz", **headers)
    assert response["Content-Type"] == "application/json; charset=utf-8"


def test_non_ascii_text_is_utf8(client, actors):
    make_leg("u", 11, start=50, callername="\u00c9mile \U0001f600")
    answer = h.call(client, LIST, **actors.customer.creds, callername_number="\u00e9mile")
    assert answer.data[0]["callername"] == "\u00c9mile \U0001f600"
    answer.raw.decode("utf-8")


# --- HTTP status ---------------------------------------------------------------------


def test_http_status_is_200_by_default(client, actors):
    for kind, answer in _answers_of_every_kind(client, actors).items():
        assert answer.status == 200, kind


def test_http_status_follows_the_code_when_configured(client, actors, settings):
    settings.ENSWITCH_HTTP_STATUS = "code"
    for kind, answer in _answers_of_every_kind(client, actors).items():
        assert answer.status == int(answer.code), kind
    plan = f.rate_plan(["cdrs"])
    plan.features = ["x"]
    plan.save()
    actors.customer.customer.rate_plan = plan
    actors.customer.customer.save()
    answer = h.call(client, LIST, **actors.customer.creds)
    assert answer.status == 403
    assert answer.code == "403"


def test_http_status_200_setting(client, actors, settings):
    settings.ENSWITCH_HTTP_STATUS = "200"
    assert h.call(client, LIST, auth_username="x", auth_password="y").status == 200


# --- requests shaped like real clients ------------------------------------------------


def test_hand_built_semicolon_url(client, simple):
    # "...?auth_username=" . $u . ";auth_password=" . $p . ";start=0;limit=10"
    make_leg("named", 11, start=50, callername="\u00c9mile Zola")
    url = "auth_username=simple;auth_password=pw123;start=0;end=2000000000;limit=10;sort=start"
    assert raw(client, url).ids == ["a", "b", "named"]
    url_utf8 = (url + ";callername_number=\u00c9mile Z").encode()  # unencoded UTF-8, a space
    assert raw(client, url_utf8).ids == ["named"]
    assert raw(client, url + ";callername_number=%C3%89mile+Z").ids == ["named"]


@pytest.mark.parametrize("path", PATHS["list"])
def test_requests_style_post_with_params_in_the_query_and_an_empty_body(client, simple, path):
    qs = "auth_username=simple;auth_password=pw123;status=busy"
    response = client.post(
        path + "?" + qs, data="", content_type="application/x-www-form-urlencoded"
    )
    answer = h.decode(response)
    assert answer.ids == ["b"]
    response = client.post(path + "?" + qs.replace(";", "&"), data={})  # multipart, empty
    assert h.decode(response).ids == ["b"]


def test_php_style_http_build_query(client, simple):
    make_leg("js", 11, start=50, callername="John Smith")
    qs = (
        "auth_username=simple&auth_password=pw123"
        "&callername_number=John+Smith&callername_match=exact"
    )
    assert raw(client, qs).ids == ["js"]


def test_curl_data_style_post(client, simple):
    # curl -d 'auth_username=simple' -d 'auth_password=pw123' -d 'status=answer' URL
    body = "auth_username=simple&auth_password=pw123&status=answer"
    answer = h.post_form(client, LIST.rstrip("/"), body)
    assert answer.ids == ["a"]


def test_json_client_posting_to_the_path_without_slash(client, simple):
    payload = {"auth_username": "simple", "auth_password": "pw123", "limit": 1, "offset": 1}
    answer = h.post_json(client, LIST.rstrip("/"), payload)
    assert answer.ids == ["b"]
    payload = {"auth_username": "simple", "auth_password": "pw123", "uniqueid": "a"}
    answer = h.post_json(client, GET.rstrip("/"), payload)
    assert answer.data["uniqueid"] == "a"


def test_post_with_no_content_type_and_a_form_body(client, simple):
    answer = h.request(
        client,
        LIST,
        method="POST",
        body=b"auth_username=simple&auth_password=pw123&status=busy",
    )
    assert answer.ids == ["b"]


def test_credentials_survive_every_encoding(client, actors):
    # PASSWORD holds ; & = + %: fully encoded it arrives intact by every route.
    who = actors.customer
    assert raw(client, creds_qs(who)).ids == ["a", "b"]
    assert h.post_form(client, LIST, who.creds).ids == ["a", "b"]
    assert h.post_json(client, LIST, who.creds).ids == ["a", "b"]
    assert h.post_multipart(client, LIST, who.creds).ids == ["a", "b"]


# --- any text survives any encoding ---------------------------------------------------

TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=12
)


@st.composite
def encodings(draw: Any, text: str) -> bytes:
    """One of the many ways a client may write `text` in a query string or form body."""
    out = []
    for ch in text:
        utf8 = ch.encode()
        escaped = "".join(f"%{b:02X}" for b in utf8)
        choices = [escaped.encode(), escaped.lower().encode()]
        if ch == " ":
            choices.append(b"+")
        if ch not in ";&+%#" and ch.isprintable() and ch != " ":
            choices.append(utf8)  # raw, as a hand-built URL sends it
        out.append(draw(st.sampled_from(choices)))
    return b"".join(out)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), text=TEXT)
def test_any_text_survives_any_encoding(client, actors, data, text):
    with transaction.atomic():
        make_leg("t", 11, start=50, status=text)
        encoded = data.draw(encodings(text))
        qs = creds_qs(actors.customer).encode() + b";status=" + encoded
        assert raw(client, qs).ids == ["t"], (text, encoded)
        assert h.post_form(client, LIST, qs).ids == ["t"], (text, encoded)
        answer = h.post_json(client, LIST, {**actors.customer.creds, "status": text})
        assert answer.ids == ["t"], text
        transaction.set_rollback(True)
