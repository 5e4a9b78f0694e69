"""Accounts as a RevOps lead wants them: pooled, with what the team adopted and whom to call."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from tests.fakes import texts
from tests.support import LiveServer


def _send(server: LiveServer, *messages: dict[str, Any]) -> None:
    now = server.clock().isoformat()
    batch = [{"messageId": str(uuid.uuid4()), "timestamp": now, **m} for m in messages]
    r = server.post("/v1/batch", {"batch": batch})
    assert r.status_code == 200, r.text


def person(user: str, email: str, name: str, account: str, **traits: Any) -> list[dict[str, Any]]:
    return [
        {"type": "identify", "userId": user, "traits": {"email": email, "name": name, **traits}},
        {"type": "group", "userId": user, "groupId": account},
    ]


def track(user: str, event: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "properties": props}


def northwind(server: LiveServer) -> None:
    _send(
        server,
        {
            "type": "group",
            "userId": "u-ada",
            "groupId": "acct-nw",
            "traits": {"name": "Northwind Traders", "plan": "free", "seats": 12},
        },
        *person("u-ada", "ada@northwind.example", "Ada Lovelace", "acct-nw"),
        *person("u-grace", "grace@northwind.example", "Grace Hopper", "acct-nw"),
        *person("u-bob", "bob@northwind.example", "Bob Billing", "acct-nw", title="Head of Finance"),
        track("u-ada", "Invite Sent", invitee_email="grace@northwind.example"),
        track("u-ada", "Invite Sent", invitee_email="alan@northwind.example"),
        track("u-grace", "Invite Sent", invitee_email="Alan@Northwind.example"),  # same teammate
        track("u-grace", "Integration Activated", integration="github"),
    )


def test_the_account_alert_shows_what_the_team_adopted_and_whom_to_call(server: LiveServer) -> None:
    northwind(server)
    alert = server.wait_alerts(1)[0]
    shown = texts(alert)
    assert alert["text"].startswith("PQL: Northwind Traders scored 45")
    assert "plan free · 12 seats" in shown
    assert re.search(r"Invited 2\+ teammates \(2: alan@northwind\.example, grace@northwind\.example\)", shown)
    assert re.search(r"Activated an integration \(1: github\)", shown)
    assert "Invited 2+ teammates: Ada Lovelace, Grace Hopper" in shown  # who drove it
    assert "Invitations: 2 sent, 1 joined, 1 outstanding (alan@northwind.example)" in shown
    assert "3 members · 3 active in the last 7 days" not in shown  # Bob has not used the product
    assert "3 members · 2 active in the last 7 days" in shown
    assert re.search(r"Grace Hopper\*.*Invite Sent ×1, Integration Activated ×1", shown)
    # Bob's title makes him the buyer to call; the most active member is named as champion.
    assert re.search(
        r"Whom to contact:\* \*Bob Billing\* \(bob@northwind\.example\) \(Head of Finance\): role says", shown
    )
    assert "Champion:* *Ada Lovelace*" in shown or "Champion:* *Grace Hopper*" in shown


def test_a_hand_raiser_becomes_the_contact(server: LiveServer) -> None:
    northwind(server)
    server.wait_alerts(1)
    _send(server, {"type": "page", "userId": "u-grace", "name": "Billing", "properties": {"path": "/billing/plan"}})
    raised = server.wait_alerts(2)[1]
    assert raised["text"].startswith("Hand-raiser: Grace Hopper at Northwind Traders")
    assert re.search(r"Whom to contact:\* \*Grace Hopper\*.*raised a hand", texts(raised))
    assert "alerts at most once a day per account" in texts(raised)  # the model's 24-hour cooldown
    assert "Whom to contact:* *Grace Hopper*" in server.command("account acct-nw")


def test_a_member_crossing_in_an_account_already_a_pql_posts_nothing(server: LiveServer) -> None:
    northwind(server)
    server.wait_alerts(1)
    _send(
        server,
        *[track("u-bob", "Invite Sent", invitee_email=f"x{i}@northwind.example") for i in range(2)],
        track("u-bob", "Integration Activated", integration="slack"),
    )
    assert "Bob Billing scores 45" in server.command("score bob@northwind.example")
    server.settle()
    assert len(server.alerts()) == 1


def test_account_answer_shows_the_alert_snapshot_and_the_trend(server: LiveServer) -> None:
    _send(
        server,
        *person("u-ada", "ada@northwind.example", "Ada Lovelace", "acct-nw"),
        track("u-ada", "Integration Activated", integration="github"),
    )
    server.clock.advance(timedelta(days=8))
    _send(
        server,
        track("u-ada", "Invite Sent", invitee_email="a@northwind.example"),
        track("u-ada", "Invite Sent", invitee_email="b@northwind.example"),
    )
    server.wait_alerts(1)
    for _ in range(3):
        _send(server, track("u-ada", "Project Created"))
    out = server.command("account acct-nw")
    assert "Score *55*" in out and "up 35 from a week ago" in out
    assert re.search(
        r"alerted <!date\^\d+\^\{ago\}\|[^>]+> at \*45\* \(Invited 2\+ teammates, Activated an integration\)", out
    )
    score = server.command("score ada@northwind.example")
    assert re.search(r"Account alerted .* at \*45\* .*, 55 now", score)


def test_membership_through_group_calls_and_context_group_id(server: LiveServer) -> None:
    # A server-side group call with only an anonymous id: account traits, no phantom member.
    _send(
        server,
        {
            "type": "group",
            "anonymousId": "server-job",
            "groupId": "acct-c",
            "traits": {"name": "Contoso", "plan": "trial", "website": "https://www.contoso.example/about"},
        },
    )
    out = server.command("account acct-c")
    assert "Contoso" in out and "plan trial" in out and "contoso.example" in out
    assert "0 members" in out
    # context.groupId on any call makes the sender a member.
    _send(
        server,
        {"type": "identify", "userId": "u-cy", "traits": {"name": "Cy"}},
        {"type": "track", "userId": "u-cy", "event": "Project Created", "context": {"groupId": "acct-c"}},
    )
    assert "1 member" in server.command("account contoso.example")
    # A later group call moves the member; an older one arriving late does not move them back.
    _send(server, {"type": "group", "userId": "u-cy", "groupId": "acct-f", "traits": {"name": "Fabrikam"}})
    old = (server.clock() - timedelta(days=3)).isoformat()
    server.post(
        "/v1/batch",
        {
            "batch": [
                {"type": "group", "userId": "u-cy", "groupId": "acct-c", "timestamp": old, "messageId": "late-group"}
            ]
        },
    )
    assert "Fabrikam" in server.command("score u-cy")
    assert "0 members" in server.command("account acct-c")
