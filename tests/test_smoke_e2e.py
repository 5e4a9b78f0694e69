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
