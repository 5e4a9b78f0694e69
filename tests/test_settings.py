"""Settings: one typed object from the environment and .env; a mistake is one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_settings

GOOD = {"SLACK_BOT_TOKEN": "xoxb-123-abc", "SLACK_SIGNING_SECRET": "s3cret-signing", "PQLBOT_WRITE_KEYS": "wk_1"}


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "0"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SLACK_SIGNING_SECRET": "x"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
        ({**GOOD, "SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN"),
        ({**GOOD, "PQLBOT_TIMEZONE": "Mars/Olympus"}, "PQLBOT_TIMEZONE"),
        ({**GOOD, "PQLBOT_CLAIM_REMINDER_HOURS": "soon"}, "PQLBOT_CLAIM_REMINDER_HOURS"),
        ({**GOOD, "PQLBOT_CLAIM_REMINDER_HOURS": "0"}, "PQLBOT_CLAIM_REMINDER_HOURS"),
        ({**GOOD, "PQLBOT_ALERT_CHANNEL": "#sales"}, "PQLBOT_ALERT_CHANNEL"),
        ({**GOOD, "PQLBOT_ADMINS": "U123,bob"}, "PQLBOT_ADMINS"),
        ({**GOOD, "PQLBOT_SLACK_ADMINS_ARE_ADMINS": "perhaps"}, "PQLBOT_SLACK_ADMINS_ARE_ADMINS"),
        ({**GOOD, "DATABASE_URL": "mysql://db/pql"}, "DATABASE_URL"),
        ({**GOOD, "DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({**GOOD, "DATABASE_URL": "postgresql://u:p@db:notaport/pql"}, "DATABASE_URL"),
        ({**GOOD, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "DATABASE_URL"),
        ({**GOOD, "PQLBOT_MODEL": "/no/such/model.yaml"}, "PQLBOT_MODEL"),
        ({**GOOD, "SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
        ({**GOOD, "SLACK_APP_TOKEN": "xoxb-not-an-app-token"}, "SLACK_APP_TOKEN"),
    ],
)
def test_serve_refuses_a_bad_setting_with_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], named: str) -> None:
    result = _serve(tmp_path, env)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_a_bad_model_file_is_refused_naming_the_problem(tmp_path: Path) -> None:
    model = tmp_path / "model.yaml"
    model.write_text("threshold: 45\nsignals:\n  - id: x\n    label: X\n    points: lots\n    events: [A]\n")
    result = _serve(tmp_path, {**GOOD, "PQLBOT_MODEL": str(model)})
    assert result.returncode == 2, result.stderr
    assert "PQLBOT_MODEL" in result.stderr and "points" in result.stderr
    assert "Traceback" not in result.stderr


def test_dotenv_in_the_working_folder_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "SLACK_BOT_TOKEN=xoxb-from-dotenv\nPQLBOT_ALERT_CHANNEL=C0FROMFILE\nPQLBOT_WRITE_KEYS=a, b ,c\n"
    )
    monkeypatch.chdir(tmp_path)
    for k in list(os.environ):
        if k.startswith(("SLACK_", "PQLBOT_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PQLBOT_ALERT_CHANNEL", "C0FROMENV")
    settings = load_settings()
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-from-dotenv"
    assert settings.alert_channel == "C0FROMENV"
    assert settings.write_key_values() == ["a", "b", "c"]


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for k in list(os.environ):
        if k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL")):
            monkeypatch.delenv(k)
    s = load_settings()
    assert s.database_url == "sqlite:///pqlbot.db"
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.write_keys == [] and s.admins == [] and s.alert_channel is None
    assert s.timezone == "UTC" and s.claim_reminder_hours == 24 and s.slack_admins_are_admins is False


def test_secrets_never_show_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-super-secret-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret-value")
    monkeypatch.setenv("PQLBOT_WRITE_KEYS", "wk_secret_key")
    s = load_settings()
    shown = repr(s) + str(s)
    for secret in ("xoxb-super-secret-token", "signing-secret-value", "wk_secret_key"):
        assert secret not in shown
    monkeypatch.setenv("PQLBOT_WRITE_KEYS", "wk ok, has space")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "has space" not in str(err.value)


def test_a_dotenv_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"PQLBOT_TIMEZONE=UTC\n\xff\xfe x\n")
    result = _serve(tmp_path, GOOD)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert ".env is not UTF-8" in result.stderr.strip().splitlines()[-1]


def test_a_model_file_nested_a_thousand_deep_is_refused_in_one_line(tmp_path: Path) -> None:
    model = tmp_path / "deep.yaml"
    model.write_text("a: " + "[" * 1000 + "]" * 1000 + "\n")
    result = _serve(tmp_path, {**GOOD, "PQLBOT_MODEL": str(model)})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "PQLBOT_MODEL" in result.stderr and "nested too deeply" in result.stderr
