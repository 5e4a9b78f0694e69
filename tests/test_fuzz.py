"""Property-based fuzzing of the ingest routes: whatever a client sends, pqlbot answers 200 or a
clear 4xx with a JSON error, never a 5xx, and what it stored can always be shown in Slack."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import LiveServer, live_server, sqlite_url

ROUTES = ["/v1/batch", "/v1/track", "/v1/identify", "/v1/group", "/v1/page", "/v1/screen", "/v1/alias", "/v1/t"]
TYPES = ["track", "identify", "group", "page", "screen", "alias"]

# Text as hostile clients send it: control characters, lone surrogates, RTL marks, markup.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "null", "undefined", "0", "[object Object]", "<!channel>", "*x*", "\u202e", "\x00"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=20),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=20,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    hostile_text,
    st.integers(),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-13-40T25:61:61Z", "2030-01-01T00:00:00Z"]),
)


@st.composite
def messages(draw: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": draw(st.one_of(st.sampled_from(TYPES), hostile_text, st.integers()))}
    for key, values in (
        ("userId", st.one_of(hostile_text, st.integers(), st.none())),
        ("anonymousId", st.one_of(hostile_text, st.none())),
        ("messageId", st.one_of(hostile_text, st.uuids().map(str))),
        (
            "event",
            st.one_of(hostile_text, st.sampled_from(["Invite Sent", "Upgrade Page Viewed", "Integration Activated"])),
        ),
        ("name", hostile_text),
        ("groupId", st.one_of(hostile_text, st.integers())),
        ("previousId", hostile_text),
        ("timestamp", timestamps),
        ("sentAt", timestamps),
        ("properties", json_values),
        ("traits", json_values),
        ("context", json_values),
    ):
        if draw(st.booleans()):
            msg[key] = draw(values)
    return msg


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(sqlite_url(tmp_path_factory.mktemp("fuzz"))) as s:
        yield s


def _check(resp: requests.Response) -> None:
    assert resp.status_code in (200, 400, 401, 413, 415), (resp.status_code, resp.text[:300])
    body = resp.json()
    assert body.get("success") is (resp.status_code == 200), body
    if resp.status_code != 200:
        assert isinstance(body.get("error"), str) and body["error"], body


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), batch=st.lists(messages(), min_size=1, max_size=5), zipped=st.booleans())
def test_any_json_gets_200_or_a_clear_4xx(fuzzed: LiveServer, route: str, batch: list[Any], zipped: bool) -> None:
    payload: Any = {"batch": batch} if route == "/v1/batch" else batch[0]
    raw = json.dumps(payload).encode()
    headers = {"Content-Encoding": "gzip"} if zipped else {}
    _check(fuzzed.post(route, raw=gzip.compress(raw) if zipped else raw, headers=headers))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), raw=st.binary(max_size=300), gzip_header=st.booleans())
def test_any_bytes_get_a_clear_4xx(fuzzed: LiveServer, route: str, raw: bytes, gzip_header: bool) -> None:
    headers = {"Content-Encoding": "gzip"} if gzip_header else {}
    _check(fuzzed.post(route, raw=raw, headers=headers))


ids = st.text(alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=30).filter(
    lambda t: t.strip() not in ("", "null", "undefined", "0", "[object Object]")
)


@st.composite
def valid_messages(draw: Any) -> dict[str, Any]:
    """Messages pqlbot stores, carrying hostile names, traits and properties."""
    kind = draw(st.sampled_from(["track", "identify", "group", "page"]))
    msg: dict[str, Any] = {"type": kind, "userId": draw(ids), "messageId": str(draw(st.uuids()))}
    if kind == "track":
        msg["event"] = draw(
            st.one_of(ids, st.sampled_from(["Invite Sent", "Integration Activated", "Upgrade Page Viewed"]))
        )
        msg["properties"] = {
            "invitee_email": draw(hostile_text),
            "integration": draw(hostile_text),
            "x": draw(json_values),
        }
    if kind in ("identify", "group"):
        msg["traits"] = {"name": draw(hostile_text), "email": draw(hostile_text), "title": draw(hostile_text)}
    if kind == "group":
        msg["groupId"] = draw(ids)
    if kind == "page":
        msg["name"] = draw(st.one_of(hostile_text, st.just("Billing")))
        msg["properties"] = {"path": draw(st.one_of(hostile_text, st.just("/billing")))}
    return msg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(valid_messages(), min_size=1, max_size=8))
def test_hostile_names_and_values_are_stored_or_refused_cleanly(fuzzed: LiveServer, batch: list[Any]) -> None:
    _check(fuzzed.post("/v1/batch", {"batch": batch}))


def test_whatever_was_stored_can_be_shown(fuzzed: LiveServer) -> None:
    """After the fuzzing (this module's server kept it all), every lead and person renders."""
    assert requests.get(fuzzed.url + "/healthz", timeout=10).status_code == 200
    for command in ("top 50", "top users 50", "stats"):
        assert "Sorry" not in fuzzed.command(command)
    from sqlalchemy import select

    from storage.tables import ACCOUNTS, USERS

    with fuzzed.runtime.db.read() as s:
        users = list(s.scalars(select(USERS.c.external_id).where(USERS.c.external_id.is_not(None)).limit(20)))
        accounts = list(s.scalars(select(ACCOUNTS.c.external_id).limit(20)))
    assert users and accounts, "the fuzzing stored people and accounts"
    for user in (u for u in users if '"' not in u):
        assert "Sorry" not in fuzzed.command(f'score "{user}"')
    for account in (a for a in accounts if '"' not in a):
        assert "Sorry" not in fuzzed.command(f'account "{account}"')
