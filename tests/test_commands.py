"""What reps see from /pql beyond the basics: who counts as a lead, finding accounts, claims."""

from __future__ import annotations

import re
import time

from tests.fakes import buttons, texts
from tests.support import ADMIN, LiveServer
from tests.test_slack import _msg, identify, integration, invites, northwind, send, track


def page(user: str, name: str, path: str) -> dict:  # type: ignore[type-arg]
    return _msg("page", user, name=name, properties={"path": path})


def test_top_lists_leads_not_everyone_who_ever_signed_up(server: LiveServer) -> None:
    send(
        server,
        identify("u-quiet", "quiet@x.example", "Quiet Quinn"),  # signed up, did nothing
        {"type": "track", "anonymousId": "anon-1", "event": "Dashboard Viewed", "messageId": "m-anon"},
        identify("u-hand", "hand@x.example", "Hannah Hand"),
        page("u-hand", "Billing", "/billing"),  # score 0 but raised a hand
        identify("u-pro", "pro@x.example", "Pat Pro"),
        integration("u-pro"),
    )
    server.wait_alerts(1)
    out = server.command("top")
    assert "Pat Pro" in out and "Hannah Hand" in out
    assert "Quiet Quinn" not in out and "anonymous" not in out
    assert "Top 2 leads" in out
    only = server.command("top users 1")
    assert "Top 1 user without an account" in only
    assert "No accounts to show yet" in server.command("top accounts")


def test_account_by_the_email_domain_its_members_use(server: LiveServer) -> None:
    northwind(server)  # no domain trait: only emails at northwind.example
    assert "Northwind Traders" in server.command("account northwind.example")
    assert "Northwind Traders" in server.command("account <mailto:someone@northwind.example|someone@northwind.example>")
    assert "No account matches" in server.command("account nowhere.example")


def test_claiming_a_lead_nobody_was_alerted_about_says_so(server: LiveServer) -> None:
    send(server, identify("u-solo", "solo@x.example", "Solo"), integration("u-solo"))
    out = server.command("claim solo@x.example")
    assert "You claimed *Solo*" in out or "You claimed Solo" in out
    assert "No alert was posted" in out
    assert "claimed by <@UREP0001>" in server.command("top")


def test_claim_by_command_updates_the_bundled_announcement(server: LiveServer) -> None:
    send(
        server,
        identify("u-a", "a@x.example", "Anna"),
        integration("u-a"),
        *invites("u-a", 1),
        identify("u-b", "b@x.example", "Ben"),
        integration("u-b"),
    )
    assert "threshold 45 → 20" in server.command("threshold 20", user=ADMIN)
    bundle = next(a for a in server.wait_alerts(1) if "after a model change" in a["text"])
    assert len(buttons(bundle)) == 2
    assert "You claimed" in server.command("claim b@x.example")
    deadline = time.time() + 5  # the announcement is updated just after the answer
    while not (updates := [u for u in server.slack.posted("chat.update") if u.get("ts") == bundle["_ts"]]):
        if time.time() > deadline:
            break
        time.sleep(0.02)
    assert updates, "the bundle was not updated"
    shown = texts(updates[-1])
    assert re.search(r"Ben.*claimed by <@UREP0001>", shown)
    assert len(buttons(updates[-1])) == 1  # Anna is still claimable


def test_alert_times_are_slack_dates_that_stay_right(server: LiveServer) -> None:
    northwind(server)
    alert = server.wait_alerts(1)[0]
    assert re.search(r"<!date\^\d{10}\^\{ago\}\|\d{4}-\d\d-\d\d \d\d:\d\d UTC>", texts(alert))


def test_a_lone_user_alert_has_no_team_section(server: LiveServer) -> None:
    send(server, identify("u-solo", "solo@x.example", "Solo"), *invites("u-solo"), integration("u-solo"))
    alert = server.wait_alerts(1)[0]
    shown = texts(alert)
    assert "Team adoption" not in shown and "not in any account yet" in shown


def test_score_explains_inactivity_in_days(server: LiveServer) -> None:
    send(server, identify("u-idle", "idle@x.example", "Idle"), track("u-idle", "Project Created"))
    out = server.command("score idle@x.example")
    assert "idle 0 days so far" in out and "0 of 14" not in out


def test_an_anonymous_visitor_on_pricing_pages_no_one(server: LiveServer) -> None:
    send(
        server,
        {
            "type": "page",
            "anonymousId": "anon-visitor",
            "name": "Pricing",
            "properties": {"path": "/pricing"},
            "messageId": "m-anon-pricing",
        },
    )
    send(server, identify("u-known", "known@x.example", "Known"), page("u-known", "Pricing", "/pricing"))
    alerts = server.wait_alerts(1)
    server.settle()
    assert [a["text"] for a in server.alerts()] == [alerts[0]["text"]]
    assert "Known" in alerts[0]["text"]
