"""End to end through real HTTP: Segment's own client in, alerts out at a fake Slack."""

from __future__ import annotations

from tests.fakes import buttons, texts
from tests.support import LiveServer


def make_pql(server: LiveServer) -> None:
    client = server.segment()
    client.identify("u-ada", {"email": "ada@northwind.example", "name": "Ada Lovelace"})
    client.group("u-ada", "acct-northwind", {"name": "Northwind Traders"})
    client.track("u-ada", "Invite Sent", {"invitee_email": "grace@northwind.example"})
    client.track("u-ada", "Invite Sent", {"invitee_email": "alan@northwind.example"})
    client.track("u-ada", "Integration Activated", {"integration": "github"})
    client.flush()


def test_pql_alert(server: LiveServer) -> None:
    make_pql(server)
    alerts = server.wait_alerts(1)
    assert len(alerts) == 1
    assert alerts[0]["text"].startswith("PQL")
    assert "Northwind Traders" in texts(alerts[0])
    assert any("Claim" in texts(b.get("text")) for b in buttons(alerts[0]))
    print(texts(alerts[0]))
    out = server.command("top")
    print(out)
    assert "45" in out


def test_a_claim_made_while_the_alert_is_being_posted_shows_on_it(server: LiveServer) -> None:
    server.slack.fail_next["chat.postMessage"] = [{"delay": 1.5}]  # Slack answers slowly
    make_pql(server)
    # Wait until the post is in flight, then claim from a slash command before Slack answers.
    for _ in range(100):
        if server.slack.posted("chat.postMessage"):
            break
        server.settle(0.02)
    assert "You claimed" in server.command("claim ada@northwind.example")
    server.settle(2.5)
    alert = server.alerts()[0]
    assert any(b.get("type") == "actions" for b in alert["blocks"])  # it was rendered unclaimed
    updates = [u for u in server.slack.posted("chat.update") if u.get("ts") == alert["_ts"]]
    assert updates and "Claimed by <@UREP0001>" in texts(updates[-1])
    assert not buttons(updates[-1])
