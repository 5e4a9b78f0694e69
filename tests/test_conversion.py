"""Customers: `Subscription Started` converts a PQL; /pql stats counts it in its month."""

from __future__ import annotations

from tests.support import LiveServer
from tests.test_smoke_e2e import make_pql


def test_subscription_started_converts_the_pql_and_stats_count_it(server: LiveServer) -> None:
    make_pql(server)
    assert len(server.wait_alerts(1)) == 1
    before = server.command("stats")
    assert "0 of 1" in before, before
    client = server.segment()
    client.track("u-ada", "Subscription Started", {"plan": "team"})
    client.flush()
    after = server.command("stats 3")
    assert "1 of 1" in after and "100%" in after, after
    # A customer is no longer a lead: not in /pql top, and opening billing raises no hand.
    assert "Northwind" not in server.command("top")
    client.page("u-ada", name="Billing", properties={"path": "/billing"})
    client.flush()
    server.settle()
    assert len(server.alerts()) == 1


def test_stats_refuses_a_bad_month_count(server: LiveServer) -> None:
    for bad in ("0", "99", "six", "1 2"):
        assert "months from 1 to 24" in server.command(f"stats {bad}")
