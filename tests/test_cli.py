"""The `pqlbot` command: every user mistake is one line and exit status 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.fakes import FakeSlack

GOOD = {"SLACK_BOT_TOKEN": "xoxb-1-good", "SLACK_SIGNING_SECRET": "secret", "PQLBOT_WRITE_KEYS": "wk"}


def _run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=timeout
    )


def _one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and " WARNING " not in ln and " INFO " not in ln]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line(_run(tmp_path, "serve", "--port", str(port), env=GOOD), "already in use", str(port))


def test_bad_host_and_port_are_one_line(tmp_path: Path) -> None:
    _one_line(_run(tmp_path, "serve", "--host", "999.1.1.1", env=GOOD), "--host")
    result = _run(tmp_path, "serve", "--port", "99999", env=GOOD)
    assert result.returncode == 2 and "--port" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_sqlite_folder_is_one_line(tmp_path: Path) -> None:
    env = {**GOOD, "DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/pqlbot.db"}
    for args in (("serve", "--port", "0"), ("db", "upgrade"), ("rescore",)):
        _one_line(_run(tmp_path, *args, env=env), "DATABASE_URL")


def test_a_token_slack_refuses_stops_serve(tmp_path: Path) -> None:
    slack = FakeSlack()
    try:
        slack.fail_next["auth.test"] = [{"body": {"ok": False, "error": "invalid_auth"}}]
        result = _run(tmp_path, "serve", "--port", "0", env={**GOOD, "SLACK_API_URL": slack.api_url})
        _one_line(result, "SLACK_BOT_TOKEN", "invalid_auth")
    finally:
        slack.close()


def test_db_upgrade_says_what_it_did_and_rescore_needs_a_database(tmp_path: Path) -> None:
    _one_line(_run(tmp_path, "rescore"), "does not exist")
    assert not (tmp_path / "pqlbot.db").exists()  # nothing was created by asking
    first = _run(tmp_path, "db", "upgrade")
    assert first.returncode == 0 and "created" in first.stdout
    again = _run(tmp_path, "db", "upgrade")
    assert again.returncode == 0 and "already up to date" in again.stdout
    rescored = _run(tmp_path, "rescore")
    assert rescored.returncode == 0 and "re-scored 0 users" in rescored.stdout


def test_no_command_shows_help(tmp_path: Path) -> None:
    for args in ((), ("db",)):
        result = _run(tmp_path, *args)
        assert result.returncode == 2 and "usage:" in result.stderr


def test_demo_output_cut_short_is_quiet(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `pqlbot demo | head -1`
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(60)
    assert "Traceback" not in err, err
