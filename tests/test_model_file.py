"""`pqlbot model export` and `import`: the file admins keep in version control."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scoring.model import load_model

CUSTOM = """\
# our own scorecard
format: 1
threshold: 50
signals:
  - id: seats_invited
    label: Invited 3+ teammates
    events: [Invite Sent, Teammate Invited]
    distinct_property: invitee_email
    min_count: 3
    points: 30
  - id: reports_habit
    label: Viewed reports on 4+ days a week
    pages: [Reports]
    paths: [/reports]
    min_count: 4
    window_days: 7
    points: 25
  - id: errors
    label: Hit 10+ errors
    events: [Error Shown]
    min_count: 10
    points: -10
  - id: gone_quiet
    label: No activity in 21 days
    inactive_days: 21
    points: -20
hand_raisers:
  events: [Upgrade Page Viewed]
  pages: [Pricing]
  paths: [/billing, /checkout]
  cooldown_hours: 48
conversions:
  events: [Subscription Started, Order Completed]
"""


def _run(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True, input=stdin, timeout=60
    )


def _body(exported: str) -> str:
    return "\n".join(line for line in exported.splitlines() if not line.startswith("#"))


def test_export_then_import_is_lossless(tmp_path: Path) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    (tmp_path / "ours.yaml").write_text(CUSTOM)
    imported = _run(tmp_path, "model", "import", "ours.yaml")
    assert imported.returncode == 0, imported.stderr
    assert "model v2 is live" in imported.stdout and "threshold 45 → 50" in imported.stdout
    assert "signal teammates_invited removed" in imported.stdout and "signal reports_habit added" in imported.stdout
    first = _run(tmp_path, "model", "export")
    assert first.returncode == 0 and first.stdout.startswith("# pqlbot scoring model v2")
    assert load_model(first.stdout) == load_model(CUSTOM)
    # Round trip: what was exported imports as "already live" and exports the same again.
    (tmp_path / "exported.yaml").write_text(first.stdout)
    again = _run(tmp_path, "model", "import", "exported.yaml")
    assert again.returncode == 0 and "already live" in again.stdout
    second = _run(tmp_path, "model", "export", "copy.yaml")
    assert second.returncode == 0
    assert _body((tmp_path / "copy.yaml").read_text()) == _body(first.stdout)


def test_a_bad_file_is_refused_whole_and_the_live_model_is_untouched(tmp_path: Path) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    before = _run(tmp_path, "model", "export").stdout
    bad = CUSTOM.replace("points: 30", "points: thirty").replace("id: errors", "id: reports_habit")
    bad = bad.replace("events: [Error Shown]", "events: []").replace("cooldown_hours: 48", "cooldown: 48")
    result = _run(tmp_path, "model", "import", "-", stdin=bad)
    assert result.returncode == 2 and "nothing was changed" in result.stderr
    for problem in (
        "signals[0].points",
        "signals[2].id: duplicate signal id 'reports_habit'",
        "signals[2]: needs at least one of events",
        "hand_raisers.cooldown: unknown key",
    ):
        assert problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _run(tmp_path, "model", "export").stdout == before
    missing = _run(tmp_path, "model", "import", "no-such.yaml")
    assert missing.returncode == 2 and "cannot read no-such.yaml" in missing.stderr
