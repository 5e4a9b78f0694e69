"""Slack, end to end: what sales reps and admins see in the alert channel and from `/pql`.

A real pqlbot server runs on a local port; usage events arrive over HTTP as Segment sends them,
and Slack is a fake Web API that records every call. Assertions are about what appears in Slack.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from datetime import timedelta
from typing import Any

import pytest
import requests

from tests.fakes import blocks_of, buttons, texts
from tests.support import ADMIN, CHANNEL, LiveServer

REP = "UREP0001"
OTHER_REP = "UREP0002"
EVIL_ACCOUNT = "<!channel> & <@U123> <https://evil.example|click>"
EVIL_USER = "Eve <!here> Mallory"
RAW_MARKUP = ("<!channel>", "<!here>", "<@U123>", "<https://")


# --- sending usage events ------------------------------------------------------------------------


def _msg(kind: str, user: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "userId": user, "messageId": fields.pop("messageId", None) or str(uuid.uuid4()), **fields}


def identify(user: str, email: str, name: str) -> dict[str, Any]:
    return _msg("identify", user, traits={"email": email, "name": name})


def group(user: str, account: str, name: str | None = None) -> dict[str, Any]:
    return _msg("group", user, groupId=account, traits={"name": name} if name else {})


def track(user: str, event: str, message_id: str | None = None, **props: Any) -> dict[str, Any]:
    return _msg("track", user, event=event, properties=props, messageId=message_id)


def invites(user: str, n: int = 2) -> list[dict[str, Any]]:
    return [track(user, "Invite Sent", invitee_email=f"invitee{i}-{user}@example.com") for i in range(n)]


def integration(user: str) -> dict[str, Any]:
    return track(user, "Integration Activated", integration="github")


def habit(user: str) -> list[dict[str, Any]]:
    return [track(user, "Core Feature Used") for _ in range(5)]


def projects(user: str) -> list[dict[str, Any]]:
    return [track(user, "Project Created") for _ in range(3)]


def send(server: LiveServer, *messages: dict[str, Any] | list[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for m in messages:
        batch.extend(m if isinstance(m, list) else [m])
    resp = server.post("/v1/batch", {"batch": batch})
    assert resp.status_code == 200, resp.text


def northwind(server: LiveServer) -> None:
    """Northwind Traders crosses 45 together: Ada invites two teammates, Grace connects GitHub."""
    send(
        server,
        identify("u-ada", "ada@northwind.example", "Ada Lovelace"),
        identify("u-grace", "grace@northwind.example", "Grace Hopper"),
        group("u-ada", "acct-northwind", "Northwind Traders"),
        group("u-grace", "acct-northwind", "Northwind Traders"),
        invites("u-ada"),
    )
    send(server, integration("u-grace"))


def one_alert(server: LiveServer) -> dict[str, Any]:
    alerts = server.wait_alerts(1)
    assert len(alerts) == 1, [a.get("text") for a in alerts]
    return alerts[0]


def no_new_alerts(server: LiveServer, before: int) -> None:
    server.settle()
    assert [a.get("text") for a in server.alerts()[before:]] == []


def claim_button(message: dict[str, Any]) -> dict[str, Any]:
    found = [b for b in buttons(message) if "Claim" in texts(b.get("text"))]
    assert found, f"no Claim button in {texts(message)}"
    return found[0]


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def response_to(server: LiveServer, name: str, timeout: float = 5.0) -> dict[str, Any] | None:
    def found() -> dict[str, Any] | None:
        with server.slack.lock:
            hits = [b for p, b in server.slack.responses if p.endswith("/" + name)]
        return hits[-1] if hits else None

    return wait_for(found, timeout)


def everything_slack_received(server: LiveServer) -> list[dict[str, Any]]:
    with server.slack.lock:
        calls = [b for m, b in server.slack.calls if m in ("chat.postMessage", "chat.update", "chat.postEphemeral")]
        return calls + [b for _, b in server.slack.responses]


def assert_block_kit_valid(server: LiveServer) -> None:
    """Every message Slack got is one Slack would accept (it refuses the whole message otherwise)."""
    received = everything_slack_received(server)
    assert received
    for message in received:
        blocks = blocks_of(message)
        assert len(blocks) <= 50, f"{len(blocks)} blocks"
        for block in blocks:
            kind = block.get("type")
            if kind == "header":
                assert len(block["text"]["text"]) <= 150
            if kind == "section":
                if "text" in block:
                    assert 0 < len(block["text"]["text"]) <= 3000
                for f in block.get("fields") or []:
                    assert len(f["text"]) <= 2000
                assert len(block.get("fields") or []) <= 10
            for b in [*(block.get("elements") or []), block.get("accessory") or {}]:
                if isinstance(b, dict) and b.get("type") == "button":
                    assert 0 < len(b["text"]["text"]) <= 75


# --- request signing -----------------------------------------------------------------------------


def _command_body(server: LiveServer, name: str) -> str:
    return urllib.parse.urlencode(
        {
            "command": "/pql",
            "text": "weight integration_activated 99",
            "user_id": ADMIN,
            "team_id": "T0ACME",
            "channel_id": "C0WORK",
            "response_url": server.slack.response_url(name),
            "trigger_id": "1.1.x",
        }
    )


def test_requests_not_signed_with_the_signing_secret_are_refused(server: LiveServer) -> None:
    form = "application/x-www-form-urlencoded"
    unsigned = requests.post(
        server.url + "/slack/events",
        data=_command_body(server, "unsigned").encode(),
        headers={"Content-Type": form},
        timeout=10,
    )
    forged = server.signed(_command_body(server, "forged"), form, secret="not-the-secret")
    stale = server.signed(_command_body(server, "stale"), form, timestamp=int(time.time()) - 301)
    ahead = server.signed(_command_body(server, "ahead"), form, timestamp=int(time.time()) + 301)
    assert (unsigned.status_code, forged.status_code, stale.status_code, ahead.status_code) == (401, 401, 401, 401)
    garbage = requests.post(
        server.url + "/slack/events",
        data=b"payload=\xff\xfe\xfa%ZZ\x80",
        headers={"Content-Type": form},
        timeout=10,
    )
    assert 400 <= garbage.status_code < 500
    server.settle(0.2)
    assert server.slack.responses == []
    assert re.search(r"`integration_activated`[^\n]*\*\+20\*", server.command("model"))

    # The same request, properly signed (four minutes ago: within five either way), is answered.
    assert server.signed(_command_body(server, "genuine"), form, timestamp=int(time.time()) - 240).status_code == 200
    reply = response_to(server, "genuine")
    assert reply is not None and "+20 → +99" in texts(reply)


# --- PQL alerts ----------------------------------------------------------------------------------


def test_account_crossing_posts_one_alert_a_rep_can_act_on(server: LiveServer) -> None:
    northwind(server)
    alert = one_alert(server)
    shown = texts(alert)
    assert alert["channel"] == CHANNEL
    assert alert["text"].startswith("PQL")
    assert "Northwind Traders" in alert["text"]
    assert "Ada Lovelace" in shown and "Grace Hopper" in shown  # the members who drove it
    assert "45" in alert["text"]
    assert re.search(r"Invited 2\+ teammates.*\+25", shown)
    assert re.search(r"Activated an integration.*\+20", shown)
    assert "2 active in the last 7 days" in shown
    contact = re.search(r"Whom to contact:\* \*(Ada Lovelace|Grace Hopper)\*[^:\n]*: (\S.*)", shown)
    assert contact and contact.group(2).strip()  # who, and why
    assert "Claim" in texts(claim_button(alert).get("text"))

    # Later usage above the threshold is no news.
    send(server, projects("u-ada"), habit("u-grace"))
    no_new_alerts(server, 1)
    assert_block_kit_valid(server)


def test_user_without_an_account_is_alerted_alone(server: LiveServer) -> None:
    send(server, identify("u-solo", "solo@indie.example", "Sol Oh"), invites("u-solo"), integration("u-solo"))
    alert = one_alert(server)
    assert alert["text"].startswith("PQL")
    assert "Sol Oh" in alert["text"]
    assert "no account" in texts(alert)
    claim_button(alert)
    out = server.command("score solo@indie.example")
    assert "Sol Oh scores 45" in out and "no account" in out


def test_same_message_id_resent_is_counted_once(server: LiveServer) -> None:
    send(server, identify("u-dup", "dup@repeat.example", "Dee Upp"))
    # Invites that name no invitee count one each: a duplicate would make two.
    first = track("u-dup", "Invite Sent", message_id="msg-invite-1")
    send(server, first)
    send(server, first, integration("u-dup"))
    no_new_alerts(server, 0)
    out = server.command("score dup@repeat.example")
    assert "Dee Upp scores 20" in out


def test_crossing_message_resent_posts_nothing_new(server: LiveServer) -> None:
    send(server, identify("u-ada", "ada@northwind.example", "Ada Lovelace"), invites("u-ada"))
    crossing = track("u-ada", "Integration Activated", message_id="msg-cross-1", integration="github")
    send(server, crossing)
    one_alert(server)
    send(server, crossing)
    no_new_alerts(server, 1)


# --- hand-raisers --------------------------------------------------------------------------------


def test_billing_page_raises_a_hand_once_a_day_per_account(server: LiveServer) -> None:
    send(
        server,
        identify("u-bob", "bob@initech.example", "Bob Slydell"),
        identify("u-joan", "joan@initech.example", "Joanna"),
        group("u-bob", "acct-initech", "Initech"),
        group("u-joan", "acct-initech", "Initech"),
    )
    client = server.segment()
    client.page("u-bob", name="Billing", properties={"path": "/settings/billing"})
    alert = one_alert(server)
    assert alert["text"].startswith("Hand-raiser")
    assert "Bob Slydell" in alert["text"] and "Initech" in alert["text"]
    assert "Billing" in alert["text"]
    assert "score *0*" in texts(alert)
    claim_button(alert)

    # Another member of the same account, the same day: sales already know.
    client.page("u-joan", properties={"path": "/billing/plans"})
    no_new_alerts(server, 1)

    server.clock.advance(timedelta(hours=25))
    client.page("u-joan", properties={"path": "/billing/plans"})
    alerts = server.wait_alerts(2)
    assert len(alerts) == 2
    assert alerts[1]["text"].startswith("Hand-raiser")
    assert "Joanna" in alerts[1]["text"] and "/billing/plans" in alerts[1]["text"]
    assert_block_kit_valid(server)


# --- claiming ------------------------------------------------------------------------------------


def _updates(server: LiveServer) -> list[dict[str, Any]]:
    return server.slack.posted("chat.update")


def test_claim_button_marks_the_alert_and_keeps_the_lead_with_the_first_rep(server: LiveServer) -> None:
    northwind(server)
    alert = one_alert(server)
    button = claim_button(alert)

    resp, _ = server.click(alert, button, user=REP)
    assert resp.status_code == 200
    updated = wait_for(lambda: _updates(server))
    assert len(updated) == 1
    assert (updated[0]["channel"], updated[0]["ts"]) == (CHANNEL, alert["_ts"])
    assert f"Claimed by <@{REP}>" in texts(updated[0])
    assert buttons(updated[0]) == []
    assert "Northwind Traders" in texts(updated[0])

    # A second rep, whose Slack still shows the button, is told privately who holds it.
    resp, name = server.click(alert, button, user=OTHER_REP)
    assert resp.status_code == 200
    reply = response_to(server, name)
    assert reply is not None
    assert reply.get("replace_original") is False
    assert reply.get("response_type") == "ephemeral"
    assert f"<@{REP}>" in texts(reply)
    server.settle(0.3)
    assert len(_updates(server)) == 1
    assert f"<@{OTHER_REP}>" not in texts(_updates(server))

    # The holder pressing again is reminded that it is already theirs.
    _, name = server.click(alert, button, user=REP)
    reply = response_to(server, name)
    assert reply is not None
    assert "already hold" in texts(reply)
    assert len(_updates(server)) == 1

    out = server.command("top")
    assert f"claimed by <@{REP}>" in out
    assert_block_kit_valid(server)


def test_claim_command_claims_as_the_button_does(server: LiveServer) -> None:
    northwind(server)
    alert = one_alert(server)
    out = server.command("claim ada@northwind.example", user=OTHER_REP)
    assert "You claimed Northwind Traders" in out
    updated = wait_for(lambda: _updates(server))
    assert len(updated) == 1
    assert (updated[0]["channel"], updated[0]["ts"]) == (CHANNEL, alert["_ts"])
    assert f"Claimed by <@{OTHER_REP}>" in texts(updated[0])
    assert buttons(updated[0]) == []

    # By name, as the Slack client sends it: curly quotes, any case.
    out = server.command("claim “northwind traders”", user=REP)
    assert f"Northwind Traders is already claimed by <@{OTHER_REP}>" in out
    assert len(_updates(server)) == 1
    # A claim cannot be undone by a command: part of a name is not enough.
    out = server.command("claim wind tra", user=REP)
    assert "No account is exactly `wind tra`; did you mean Northwind Traders (`acct-northwind`)?" in out


# --- slash commands ------------------------------------------------------------------------------


def _leaderboard(server: LiveServer) -> None:
    """Northwind (account, 45) and four users without an account scoring 30, 25, 20 and 10."""
    northwind(server)
    send(
        server,
        identify("u-c", "carol@solo.example", "Carol Thirty"),
        integration("u-c"),
        projects("u-c"),
        identify("u-d", "dan@solo.example", "Dan TwentyFive"),
        invites("u-d"),
        identify("u-e", "erin@solo.example", "Erin Twenty"),
        integration("u-e"),
        identify("u-f", "frank@solo.example", "Frank Ten"),
        projects("u-f"),
    )


def test_top_lists_leads_highest_first_with_score_and_claim_state(server: LiveServer) -> None:
    _leaderboard(server)
    out = server.command("top")
    order = [out.find(n) for n in ("Northwind Traders", "Carol Thirty", "Dan TwentyFive", "Erin Twenty", "Frank Ten")]
    assert -1 not in order and order == sorted(order), out
    assert re.search(r"Northwind Traders\*.*score \*45\*.*unclaimed", out)

    top3 = server.command("top 3")
    assert "Northwind Traders" in top3 and "Carol Thirty" in top3 and "Dan TwentyFive" in top3
    assert "Erin Twenty" not in top3 and "Frank Ten" not in top3

    accounts = server.command("top accounts")
    assert "Northwind Traders" in accounts and "Carol Thirty" not in accounts
    users = server.command("top users")
    assert "Carol Thirty" in users and "Frank Ten" in users and "Northwind Traders" not in users


@pytest.mark.parametrize("arg", ["0", "abc", "999", "-3"])
def test_top_with_a_bad_number_explains_what_it_takes(server: LiveServer, arg: str) -> None:
    out = server.command(f"top {arg}")
    assert "1 to 50" in out
    assert "Top" not in out


def test_score_shows_each_fired_signal_and_the_account(server: LiveServer) -> None:
    northwind(server)
    for query in ("ada@northwind.example", "<mailto:ada@northwind.example|ada@northwind.example>", "u-ada"):
        out = server.command(f"score {query}")
        assert "Ada Lovelace scores 25; Northwind Traders scores 45" in out, out
        assert re.search(r"Invited 2\+ teammates \(2\) \*\+25\*", out)
        assert re.search(r"Activated an integration \(1\) \*\+20\*", out)  # fired for the account

    out = server.command("score nobody@nowhere.example")
    assert "No user" in out and "nobody@nowhere.example" in out


@pytest.mark.parametrize("query", ["acct-northwind", "northwind TRADERS", "“Northwind Traders”"])
def test_account_by_id_name_or_quoted_name(server: LiveServer, query: str) -> None:
    northwind(server)
    out = server.command(f"account {query}")
    assert "Northwind Traders scores 45" in out, out
    assert "2 active in the last 7 days" in out
    assert "Whom to contact" in out


def test_unknown_account_is_named_in_a_clear_message(server: LiveServer) -> None:
    northwind(server)
    out = server.command("account Globex")
    assert "No account matches" in out and "Globex" in out


def test_model_shows_signals_points_threshold_and_hand_raisers(server: LiveServer) -> None:
    out = server.command("model")
    for sid, points in (
        ("teammates_invited", "+25"),
        ("integration_activated", "+20"),
        ("core_feature_habit", "+15"),
        ("projects_created", "+10"),
        ("inactive_14d", "-15"),
    ):
        assert re.search(rf"`{sid}`[^\n]*\*{re.escape(points)}\*", out), sid
    assert "*Threshold:* 45" in out
    for raiser in ("Upgrade Page Viewed", "Billing Settings Viewed", "Pricing", "/billing", "/upgrade"):
        assert raiser in out


@pytest.mark.parametrize("text", ["help", "", "frobnicate now"])
def test_help_and_unknown_words_list_the_commands(server: LiveServer, text: str) -> None:
    out = server.command(text)
    for cmd in ("/pql top", "/pql score", "/pql account", "/pql claim", "/pql model", "/pql weight"):
        assert cmd in out
    if text.startswith("frobnicate"):
        assert "frobnicate" in out


# --- admin commands ------------------------------------------------------------------------------


def test_weight_change_is_for_admins_and_rescores(server: LiveServer) -> None:
    northwind(server)
    one_alert(server)

    out = server.command("weight integration_activated 30", user=REP)
    assert "Only pqlbot admins" in out and "nothing was changed" in out
    assert re.search(r"`integration_activated`[^\n]*\*\+20\*", server.command("model"))

    out = server.command("weight integration_activated 30", user=ADMIN)
    assert "integration_activated" in out and "+20 → +30" in out
    assert "Re-scored 2 users and 1 account" in out
    assert re.search(r"`integration_activated`[^\n]*\*\+30\*", server.command("model"))
    assert "Ada Lovelace scores 25; Northwind Traders scores 55" in server.command("score u-ada")

    again = server.command("weight integration_activated 30", user=ADMIN)
    assert "nothing changed" in again and "Re-scored" not in again
    no_new_alerts(server, 1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("integrations 30", ["integration_activated", "teammates_invited", "inactive_14d"]),
        ("integration_activated thirty", ["whole number", "thirty"]),
        ("integration_activated 2.5", ["whole number", "2.5"]),
        ("integration_activated", ["Usage"]),
    ],
)
def test_bad_weight_is_refused_and_changes_nothing(server: LiveServer, args: str, expected: list[str]) -> None:
    out = server.command(f"weight {args}", user=ADMIN)
    for word in expected:
        assert word in out, out
    assert "Changed" not in out
    model = server.command("model")
    assert re.search(r"`integration_activated`[^\n]*\*\+20\*", model)
    assert "Scoring model v1" in model


def test_threshold_change_announces_new_pqls_in_one_message(server: LiveServer) -> None:
    send(
        server,
        identify("u-near", "near@close.example", "Nia Near"),
        invites("u-near"),
        habit("u-near"),  # 25 + 15 = 40
        identify("u-ben", "ben@umbrella.example", "Ben"),
        group("u-ben", "acct-umbrella", "Umbrella Corp"),
        invites("u-ben"),
        projects("u-ben"),
        track("u-ben", "Core Feature Used"),  # 25 + 10 = 35: stays below 40
        identify("u-cat", "cat@wayne.example", "Cat"),
        group("u-cat", "acct-wayne", "Wayne Enterprises"),
        integration("u-cat"),
        habit("u-cat"),
        projects("u-cat"),  # 20 + 15 + 10 = 45... already a PQL
    )
    server.wait_alerts(1)
    before = len(server.alerts())
    assert before == 1  # Wayne Enterprises

    refused = server.command("threshold 40", user=REP)
    assert "Only pqlbot admins" in refused
    assert "*Threshold:* 45" in server.command("model")

    out = server.command("threshold 40", user=ADMIN)
    assert "45 → 40" in out
    assert "1 newly above the threshold" in out and "Nia Near" in out

    server.wait_alerts(before + 1)
    server.settle()
    new = server.alerts()[before:]
    assert len(new) == 1, [a.get("text") for a in new]
    bundle = new[0]
    assert bundle["text"].startswith("PQL")
    assert "Nia Near" in texts(bundle) and "Umbrella" not in texts(bundle)
    assert len([b for b in buttons(bundle) if "Claim" in texts(b.get("text"))]) == 1
    assert "*Threshold:* 40" in server.command("model")


def test_threshold_bundle_lists_every_new_pql_with_its_own_claim_button(server: LiveServer) -> None:
    send(
        server,
        identify("u-near", "near@close.example", "Nia Near"),
        invites("u-near"),
        habit("u-near"),
        identify("u-ben", "ben@umbrella.example", "Ben"),
        group("u-ben", "acct-umbrella", "Umbrella Corp"),
        invites("u-ben"),
        habit("u-ben"),
    )
    no_new_alerts(server, 0)
    out = server.command("threshold 40", user=ADMIN)
    assert "2 newly above the threshold" in out
    bundle = one_alert(server)
    server.settle()
    assert len(server.alerts()) == 1
    assert bundle["text"].startswith("PQL")
    shown = texts(bundle)
    assert "Nia Near" in shown and "Umbrella Corp" in shown
    claims = [b for b in buttons(bundle) if "Claim" in texts(b.get("text"))]
    assert len(claims) == 2

    server.click(bundle, claims[0], user=REP)
    updated = wait_for(lambda: _updates(server))
    assert len(updated) == 1 and updated[0]["ts"] == bundle["_ts"]
    assert f"<@{REP}>" in texts(updated[0])
    assert len(buttons(updated[0])) == 1  # the other lead can still be claimed
    assert_block_kit_valid(server)


# --- escaping ------------------------------------------------------------------------------------


def test_names_users_typed_never_become_mentions_or_links(server: LiveServer) -> None:
    send(
        server,
        identify("u-eve", "eve@evil.example", EVIL_USER),
        group("u-eve", "acct-evil", EVIL_ACCOUNT),
        invites("u-eve"),
        integration("u-eve"),
        identify("u-hr", "hr@evil.example", "Hr <!channel>"),
        group("u-hr", "acct-evil"),
    )
    alert = one_alert(server)
    client = server.segment()
    client.page("u-hr", name="Pricing")
    server.wait_alerts(2)

    answers = [
        server.command("top"),
        server.command("score eve@evil.example"),
        server.command("claim acct-evil"),
        server.command("claim &lt;!channel&gt; &amp; &lt;@U123&gt;", user=OTHER_REP),
    ]
    server.command("frobnicate <!here> <@U123>")
    shown = texts(alert)
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt; &lt;https://evil.example|click&gt;" in shown
    assert "Eve &lt;!here&gt; Mallory" in shown
    assert "Hr &lt;!channel&gt;" in texts(server.alerts()[1])
    for out in answers:
        assert "&lt;!channel&gt; &amp;" in out, out
    assert "Eve &lt;!here&gt; Mallory" in answers[1]

    wait_for(lambda: _updates(server))
    everything = json.dumps(everything_slack_received(server), ensure_ascii=False)
    for raw in RAW_MARKUP:
        assert raw not in everything, raw
    assert "&amp;lt;" not in everything and "&amp;amp;" not in everything and "&amp;gt;" not in everything


def test_account_answer_escapes_what_users_typed(server: LiveServer) -> None:
    send(
        server,
        identify("u-eve", "eve@evil.example", EVIL_USER),
        group("u-eve", "acct-evil", EVIL_ACCOUNT),
        invites("u-eve"),
        integration("u-eve"),
    )
    out = server.command("account acct-evil")
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt; &lt;https://evil.example|click&gt;" in out
    assert "Eve &lt;!here&gt; Mallory" in out
    everything = json.dumps(everything_slack_received(server), ensure_ascii=False)
    for raw in RAW_MARKUP:
        assert raw not in everything, raw
    assert "&amp;lt;" not in everything


# --- Block Kit limits ----------------------------------------------------------------------------


def test_huge_account_still_gets_a_valid_alert(server: LiveServer) -> None:
    name = "Megacorp " + "& <Subsidiary> " * 340  # about 5,000 characters, many of them escaped
    assert len(name) >= 5000
    members = [f"u-m{i:02d}" for i in range(60)]
    send(
        server,
        [identify(u, f"{u}@mega.example", f"Member {i:02d} " + "x" * 200) for i, u in enumerate(members)],
        group(members[0], "acct-mega", name),
        [group(u, "acct-mega") for u in members[1:]],
    )
    send(server, [m for u in members for m in (*invites(u), integration(u), track(u, "Core Feature Used"))])
    alert = one_alert(server)
    assert alert["text"].startswith("PQL")
    assert "Megacorp &amp; &lt;Subsidiary&gt;" in alert["text"]
    assert "…" in alert["text"]
    assert "60 members" in texts(alert)
    claim_button(alert)
    assert "Megacorp &amp; &lt;Subsidiary&gt;" in server.command("top")
    assert_block_kit_valid(server)


def test_top_50_of_60_leads_is_a_valid_message_listing_all_50(server: LiveServer) -> None:
    users = [f"u-l{i:02d}" for i in range(60)]
    send(
        server,
        [identify(u, f"{u}@many.example", f"Lead {i:02d} <R&D> " + "x" * 100) for i, u in enumerate(users)],
        [integration(u) for u in users[:30]],
        [track(u, "Project Created") for u in users[30:] for _ in range(3)],
    )
    out = server.command("top 50")
    assert "Top 50" in out
    lines = re.findall(
        r"^\d+\. \*Lead (\d\d) &lt;R&amp;D&gt; x+…\* · no account · score \*(\d+)\* · unclaimed$", out, re.M
    )
    assert len(lines) == 50, out
    assert [score for _, score in lines] == ["20"] * 30 + ["10"] * 20
    assert_block_kit_valid(server)


# --- delivery ------------------------------------------------------------------------------------


def test_rate_limited_alert_is_delivered_exactly_once(server: LiveServer) -> None:
    server.slack.fail_next["chat.postMessage"] = [
        {"status": 429, "headers": {"Retry-After": "1"}, "body": {"ok": False, "error": "ratelimited"}}
    ]
    northwind(server)
    posted = wait_for(lambda: len(server.slack.posted()) >= 2, timeout=10)
    assert posted
    server.settle(1.5)
    calls = server.slack.posted()
    assert len(calls) == 2  # the refused try, then the one delivery
    assert all(c["text"].startswith("PQL") and "Northwind Traders" in c["text"] for c in calls)
    assert server.slack.fail_next["chat.postMessage"] == []

    # The delivered message is the one a claim updates.
    server.command("claim acct-northwind")
    updated = wait_for(lambda: _updates(server))
    assert len(updated) == 1 and updated[0]["channel"] == CHANNEL and updated[0]["ts"]
    assert f"Claimed by <@{REP}>" in texts(updated[0])


def test_reps_claiming_from_one_bundle_at_once_leave_it_showing_every_claim(server: LiveServer) -> None:
    """Each claim once sent the bundle as it rendered inside its own transaction; an older
    rendering could land last, leaving Claim buttons on leads already taken."""
    import threading

    send(
        server,
        *[
            m
            for i in range(12)
            for m in (identify(f"u-b{i}", f"b{i}@solo{i}.example", f"Solo{i}"), integration(f"u-b{i}"))
        ],
    )
    server.command("threshold 20", user=ADMIN)
    bundle = wait_for(lambda: next((a for a in server.alerts() if "after a model change" in a["text"]), None))
    assert bundle is not None, [a["text"] for a in server.alerts()]
    presses = buttons(bundle)
    assert len(presses) == 12
    threads = [
        threading.Thread(target=server.click, args=(bundle, b), kwargs={"user": f"UREP{i:04d}"})
        for i, b in enumerate(presses)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    def settled() -> list[dict[str, Any]]:
        mine = [u for u in _updates(server) if u["ts"] == bundle["_ts"]]
        return mine if mine and not buttons(mine[-1]) else []

    assert settled() or wait_for(settled), buttons([u for u in _updates(server) if u["ts"] == bundle["_ts"]][-1])
