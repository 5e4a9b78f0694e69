"""Admins own the model from Slack: every change audited, refused for others, previews change nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ADMIN, LiveServer, live_server, sqlite_url
from tests.test_slack import identify, integration, invites, send, track

REP = "UREP0001"


def version(server: LiveServer) -> int:
    found = re.search(r"Scoring model v(\d+)", server.command("model"))
    assert found
    return int(found.group(1))


def lead_data(server: LiveServer) -> None:
    send(
        server,
        identify("u-a", "a@x.example", "Anna"),
        *invites("u-a"),  # 25
        identify("u-b", "b@x.example", "Ben"),
        integration("u-b"),  # 20
        identify("u-c", "c@x.example", "Cleo"),
        *[track("u-c", "Report Exported") for _ in range(3)],
    )  # 0


# Each admin command: a valid use, a bad argument, Slack-rewritten text, and what a repeat says.
CASES = [
    ("weight integration_activated 30", "weight integration_activated thirty", "weight “integration_activated” 30"),
    ("threshold 50", "threshold 2.5", "threshold ‘50’"),
    ('handraiser add "Plan Compared"', "handraiser add", "handraiser add “Plan Compared”"),
    (
        'signal add reports "Report Exported" 3 10 7d',
        'signal add Reports! "Report Exported" 3 10',
        "signal add reports “Report Exported” 3 10 7d",
    ),
]


@pytest.mark.parametrize(("command", "bad", "rewritten"), CASES, ids=[c[0].split()[0] for c in CASES])
def test_admin_commands(server: LiveServer, command: str, bad: str, rewritten: str) -> None:
    lead_data(server)
    before = version(server)
    refused = server.command(command, user=REP)
    assert "Only pqlbot admins" in refused and version(server) == before
    assert "nothing was changed" in refused
    problem = server.command(bad, user=ADMIN)
    assert "Usage" in problem or "must be" in problem or "signal id" in problem, problem
    assert version(server) == before
    done = server.command(rewritten, user=ADMIN)  # curly quotes, as Slack clients send them
    assert f"Model *v{before + 1}* is live" in done, done
    again = server.command(command, user=ADMIN)
    assert "nothing changed" in again and version(server) == before + 1


def test_weight_change_reports_its_impact_and_announces_once(server: LiveServer) -> None:
    lead_data(server)
    out = server.command("weight teammates_invited 45", user=ADMIN)
    assert "weight of teammates_invited +25 → +45" in out
    assert "1 newly above the threshold" in out and "Anna" in out
    bundle = [a for a in server.wait_alerts(1) if "after a model change" in a["text"]]
    assert len(bundle) == 1 and "Anna" in str(bundle[0]["blocks"])


def test_preview_changes_nothing_and_names_who_would_move(server: LiveServer) -> None:
    lead_data(server)
    before = version(server)
    out = server.command("preview threshold 20")
    assert "Preview, nothing changed" in out and "threshold 45 → 20" in out
    assert "2 users would newly cross" in out.replace("0 accounts and ", "")
    assert "Anna" in out and "Ben" in out
    out = server.command("preview weight integration_activated 45")
    assert "1 user would newly cross" in out.replace("0 accounts and ", "") and "Ben" in out
    assert "Unknown" not in out and version(server) == before
    server.settle()
    assert server.alerts() == []
    assert "no signal `nope`" in server.command("preview weight nope 3")


def test_history_and_rollback_are_audited(server: LiveServer) -> None:
    server.command("threshold 50", user=ADMIN)
    server.command("weight integration_activated 30", user=ADMIN)
    history = server.command("model history")
    assert re.search(
        r"v3\* \(live\) · .* · <@UADMIN01> via slack · weight of integration_activated \+20 → \+30", history
    )
    assert re.search(r"v2\* · .* · <@UADMIN01> via slack · threshold 45 → 50", history)
    assert "v1* · " in history and "via default" in history
    assert "Only pqlbot admins" in server.command("model rollback 1", user=REP)
    out = server.command("model rollback v1", user=ADMIN)
    assert "Model *v4* is live" in out and "threshold 50 → 45" in out and "+30 → +20" in out
    assert "Version 1 is what is live already" in server.command("model rollback 1", user=ADMIN)
    assert "no model version 99" in server.command("model rollback 99", user=ADMIN)


def test_hand_raiser_list_edits_take_effect(server: LiveServer) -> None:
    send(server, identify("u-h", "h@x.example", "Hana"))
    assert "is not a hand-raiser event" in server.command("handraiser remove Nope", user=ADMIN)
    server.command("handraiser add 'Plan Compared'", user=ADMIN)
    send(server, track("u-h", "plan compared"))  # names match whatever the case
    assert [a["text"] for a in server.wait_alerts(1)] == ["Hand-raiser: Hana: plan compared"]
    out = server.command("handraiser remove “plan compared”", user=ADMIN)
    assert "hand-raiser event 'Plan Compared' removed" in out
    assert "Page `Pricing` already raises a hand" in server.command("handraiser add page pricing", user=ADMIN)
    assert "starts with `/`" in server.command("handraiser add path checkout", user=ADMIN)


def test_a_new_signal_counts_the_history_already_stored(server: LiveServer) -> None:
    lead_data(server)
    out = server.command('signal add reports "Report Exported" 3 10', user=ADMIN)
    assert "signal reports added" in out and "Recounted" in out
    assert "Cleo scores 10" in server.command("score c@x.example")
    assert "reports" in server.command("model")
    clash = server.command('signal add reports "Something Else" 1 5', user=ADMIN)
    assert "already exists and counts something else" in clash
    gone = server.command("signal remove reports", user=ADMIN)
    assert "signal reports removed" in gone
    assert "Cleo scores 0" in server.command("score c@x.example")
    assert "no signal `reports`" in server.command("signal remove reports", user=ADMIN)


@pytest.fixture
def slack_admins(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(sqlite_url(tmp_path), PQLBOT_SLACK_ADMINS_ARE_ADMINS="true") as s:
        yield s


def test_workspace_admins_may_change_the_model_when_allowed(slack_admins: LiveServer) -> None:
    slack_admins.slack.fail_next["users.info"] = [
        {"body": {"ok": True, "user": {"id": "UWSADMIN", "is_admin": True, "is_owner": False}}},
        {"body": {"ok": True, "user": {"id": "UMEMBER", "is_admin": False, "is_owner": False}}},
    ]
    assert "is live" in slack_admins.command("threshold 40", user="UWSADMIN")
    assert "Only pqlbot admins" in slack_admins.command("threshold 41", user="UMEMBER")
    assert slack_admins.slack.posted("users.info")
    assert "Model *v3*" in slack_admins.command("threshold 42", user=ADMIN)  # PQLBOT_ADMINS need no lookup


def test_workspace_admins_are_not_admins_by_default(server: LiveServer) -> None:
    server.slack.fail_next["users.info"] = [{"body": {"ok": True, "user": {"id": "UWSADMIN", "is_admin": True}}}]
    assert "Only pqlbot admins" in server.command("threshold 40", user="UWSADMIN")
    assert not server.slack.posted("users.info")


def test_invisible_names_are_refused_and_make_no_version(server: LiveServer) -> None:
    """A zero-width space once became a hand-raiser that showed blank in /pql model."""
    before = server.command("model history")
    for text in (
        "handraiser add \u200b",
        "handraiser add page \u200b",
        "handraiser add path /\u200b",
        'signal add f "\u200b" 1 1',
        "handraiser add Up\u202egrade",
    ):
        out = server.command(text, user=ADMIN)
        assert "invisible or text-direction character" in out, (text, out)
    assert server.command("model history") == before
