"""Regressions from trying to break identity and accounts: each once attributed events, leads or
alerts to the wrong person."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes import buttons, texts
from tests.support import LiveServer
from tests.test_accounts import _send


def pql(user: str, **ids: Any) -> list[dict[str, Any]]:
    base = {"userId": user, **ids} if user else ids
    return [
        {
            "type": "track",
            **base,
            "event": "Invite Sent",
            "properties": {"invitee_email": f"{user or 'v'}-{i}@x.example"},
        }
        for i in range(2)
    ] + [{"type": "track", **base, "event": "Integration Activated", "properties": {"integration": "slack"}}]


def alerts(server: LiveServer, prefix: str = "") -> list[str]:
    server.settle(0.8)
    return [a["text"] for a in server.alerts() if a["text"].startswith(prefix)]


def test_a_user_id_equal_to_someones_anonymous_id_is_its_own_person(server: LiveServer) -> None:
    _send(
        server,
        {
            "type": "identify",
            "userId": "alice",
            "anonymousId": "dev-1",
            "traits": {"email": "alice@a.example", "name": "Alice"},
        },
    )
    _send(server, {"type": "identify", "userId": "dev-1", "traits": {"email": "bob@b.example", "name": "Bob"}})
    assert "Alice scores" in server.command("score alice@a.example")
    assert "Bob scores" in server.command("score bob@b.example")
    assert "Bob scores" in server.command("score dev-1")


def test_a_signed_up_user_named_like_a_visitor_raises_their_own_hand(server: LiveServer) -> None:
    _send(server, {"type": "page", "anonymousId": "v9", "name": "Docs"})
    _send(server, {"type": "track", "userId": "v9", "event": "Billing Settings Viewed"})
    assert alerts(server, "Hand-raiser") == ["Hand-raiser: v9: Billing Settings Viewed"]
    _send(server, {"type": "identify", "userId": "zed", "anonymousId": "v9"})  # only the anonymous visitor joins
    assert alerts(server, "Hand-raiser") == ["Hand-raiser: v9: Billing Settings Viewed"]


def test_an_anonymous_visitor_is_announced_when_identified_not_before(server: LiveServer) -> None:
    _send(server, *pql("", anonymousId="anon-7"))
    assert alerts(server) == []
    _send(
        server,
        {
            "type": "identify",
            "userId": "u-7",
            "anonymousId": "anon-7",
            "traits": {"name": "Seven", "email": "seven@x.example"},
        },
    )
    assert alerts(server, "PQL") == ["PQL: Seven scored 45 (threshold 45)"]


def test_a_lead_follows_its_user_into_an_account(server: LiveServer) -> None:
    _send(
        server,
        {"type": "identify", "userId": "solo", "traits": {"name": "Solo", "email": "solo@x.example"}},
        *pql("solo"),
    )
    assert alerts(server, "PQL") == ["PQL: Solo scored 45 (threshold 45)"]
    assert "You claimed" in server.command("claim solo@x.example", user="UREP0001")
    _send(server, {"type": "group", "userId": "solo", "groupId": "acct-later", "traits": {"name": "Later Inc"}})
    assert alerts(server, "PQL") == ["PQL: Solo scored 45 (threshold 45)"]  # the same crossing, not a new one
    assert "claimed by <@UREP0001>" in server.command("account acct-later")
    assert "1 of 1" not in server.command("stats") and "0 of 1" in server.command("stats")


def test_merging_two_claimed_people_keeps_a_claim_and_old_buttons_work(server: LiveServer) -> None:
    _send(server, {"type": "identify", "userId": "X", "traits": {"name": "Xena"}}, *pql("X"))
    _send(server, {"type": "identify", "userId": "Y", "traits": {"name": "Yann"}}, *pql("Y"))
    server.wait_alerts(2)
    x_alert = next(a for a in server.alerts() if a["text"].startswith("PQL: Xena"))
    server.command("claim X", user="UREPX")
    server.command("claim Y", user="UREPY")
    _send(server, {"type": "alias", "previousId": "X", "userId": "Y"})  # X was Y all along
    top = server.command("top")
    assert "claimed by <@UREPY>" in top and "Xena" not in top
    _resp, name = server.click(
        x_alert,
        buttons(x_alert)[0] if buttons(x_alert) else {"action_id": "claim_lead", "value": "1", "_block_id": "claim"},
        user="UREPZ",
    )
    told = texts(server.wait_response(name))
    assert "no longer exists" not in told and "UREPY" in told  # X's old button acts on the merged lead
    assert len(alerts(server, "PQL")) == 2


def test_a_group_call_from_a_servers_anonymous_id_adds_no_member(server: LiveServer) -> None:
    _send(server, {"type": "track", "anonymousId": "server", "event": "Nightly Sync"})
    _send(server, {"type": "group", "anonymousId": "server", "groupId": "acct-g6", "traits": {"name": "G Six"}})
    assert "0 members" in server.command("account acct-g6")


def test_the_contact_is_never_an_anonymous_visitor_and_role_counts(server: LiveServer) -> None:
    _send(
        server,
        {
            "type": "identify",
            "userId": "ceo",
            "traits": {"name": "Cee", "email": "ceo@g.example", "title": "Software Engineer", "role": "admin"},
        },
        {"type": "group", "userId": "ceo", "groupId": "acct-g7", "traits": {"name": "G Seven"}},
        {"type": "track", "userId": "ceo", "event": "Project Created"},
    )
    _send(server, {"type": "page", "anonymousId": "hv", "name": "Pricing", "context": {"groupId": "acct-g7"}})
    out = server.command("account acct-g7")
    assert re.search(r"Whom to contact:\* \*Cee\*.*Software Engineer · admin.*role says", out), out
    assert "anonymous" not in out


def test_one_event_from_another_workspace_does_not_move_a_member(server: LiveServer) -> None:
    _send(
        server,
        {"type": "identify", "userId": "wa1", "traits": {"name": "Wanda"}},
        {"type": "group", "userId": "wa1", "groupId": "acct-wa", "traits": {"name": "WA"}},
        *pql("wa1"),
    )
    _send(server, {"type": "track", "userId": "wa1", "event": "Core Feature Used", "context": {"groupId": "acct-wb"}})
    assert "WA" in server.command("score wa1")
    assert "scores 45" in server.command("account acct-wa")
    assert len(alerts(server, "PQL")) == 1


def test_account_names_beyond_ascii_are_found(any_server: LiveServer) -> None:
    for account, name in (("acct-ae", "Ärzte GmbH"), ("acct-ss", "Straße AG"), ("acct-is", "İstanbul Ltd")):
        _send(any_server, {"type": "group", "userId": f"u-{account}", "groupId": account, "traits": {"name": name}})
        for query in (name, name.upper(), name.lower()):
            assert name in any_server.command(f"account {query}"), (name, query)
    assert "Ärzte GmbH" in any_server.command("account ärzte")


def test_score_by_email_prefers_the_active_user(any_server: LiveServer) -> None:
    _send(
        any_server, {"type": "identify", "userId": "twin-a", "traits": {"email": "twin@x.example", "name": "Idle Twin"}}
    )
    _send(
        any_server,
        {"type": "identify", "userId": "twin-b", "traits": {"email": "twin@x.example", "name": "Busy Twin"}},
        {"type": "track", "userId": "twin-b", "event": "Project Created"},
    )
    assert "Busy Twin" in any_server.command("score twin@x.example")


def test_drivers_are_counted_in_accounts_of_any_size(server: LiveServer) -> None:
    members = [f"m{i:03d}" for i in range(620)]
    for part in range(0, len(members), 200):
        _send(
            server,
            *[
                {"type": "group", "userId": m, "groupId": "acct-big", "traits": {"name": "Big"}}
                for m in members[part : part + 200]
            ],
        )
        _send(
            server,
            *[
                {"type": "track", "userId": m, "event": "Project Created", "messageId": str(uuid.uuid4())}
                for m in members[part : part + 200]
            ],
        )
    out = server.command("account acct-big")
    assert re.search(r"Created 3\+ projects: (m\d{3}, ){4}m\d{3} and 615 more", out), out
    assert "620 members" in out
