"""`pqlbot demo` runs the main job end to end and shows what a sales channel would see."""

from __future__ import annotations

import io
import re

from bot.demo import load_stream, run_demo


def test_the_bundled_stream_is_realistic() -> None:
    stream = load_stream()
    users = {m["userId"] for m in stream if m.get("userId")}
    accounts = {m["groupId"] for m in stream if m["type"] == "group"}
    assert len(users) >= 200 and len(accounts) >= 24
    assert {"Invite Sent", "Integration Activated", "Core Feature Used", "Project Created"} <= {
        m.get("event") for m in stream
    }
    assert any(m["type"] == "page" and m.get("name") in ("Billing", "Pricing") for m in stream)
    assert stream[0]["timestamp"] < stream[-1]["timestamp"]


def test_demo_prints_pql_and_hand_raiser_alerts_then_top() -> None:
    out = io.StringIO()
    assert run_demo(out=out) == 0
    text = out.getvalue()
    alerts = re.search(r"#sales-alerts: (\d+) alerts", text)
    assert alerts and int(alerts.group(1)) >= 10, text[-2000:]
    assert "New PQL account" in text and "Hand-raiser" in text
    assert "Whom to contact" in text and "[ Claim lead ]" in text
    top = text.split("/pql top", 1)[1]
    assert re.search(r"1\. .+ score \d+", top), top
    assert "Traceback" not in text
