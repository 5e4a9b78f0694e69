"""A model file or command that is hostile, huge or subtly wrong is refused whole, in one clear
message, and the live model stays as it was (regressions found by trying to break issue 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bot.render import MAX_BLOCKS, MAX_SECTION
from scoring.model import ModelError, default_model, dump_model, load_model, model_to_dict
from tests.fakes import texts
from tests.support import ADMIN, LiveServer

DEFAULT = dump_model(default_model())


def problems(text: str) -> list[str]:
    with pytest.raises(ModelError) as exc:
        load_model(text, complete=True)
    return exc.value.problems


def test_an_alias_bomb_is_refused_at_once() -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefghi", "bcdefghij", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.monotonic()
    found = problems("\n".join(levels) + "\nthreshold: 45\nsignals: *j\n")
    assert time.monotonic() - started < 2
    assert found == ["(model): line 1: anchors (&name) are not allowed in a model file"]


def test_a_key_written_twice_is_refused_with_its_lines() -> None:
    found = problems(DEFAULT + "threshold: 46\n")
    assert len(found) == 1 and "'threshold' appears twice (also line 2)" in found[0], found


def test_size_limits() -> None:
    assert "larger than 1024 KB" in problems("#" * (1024 * 1024 + 1))[0]
    data = model_to_dict(default_model())
    data["signals"] = [
        {"id": f"s{i}", "label": f"signal {i}", "events": [f"Event {i}"], "points": 1} for i in range(101)
    ]
    assert "signals: has too many entries (at most 100)" in problems(yaml.safe_dump(data))


def test_a_model_no_one_can_qualify_under_is_refused() -> None:
    data = model_to_dict(default_model())
    assert problems(yaml.safe_dump({**data, "signals": []})) == [
        "signals: no signal has positive points, so no one could ever become a PQL"
    ]
    assert problems(yaml.safe_dump({**data, "threshold": 71})) == [
        "threshold: 71 cannot be reached: every positive signal together gives 70"
    ]


def test_every_problem_is_listed_together() -> None:
    data = model_to_dict(default_model())
    data["format"] = 2
    data["signals"][0]["label"] = "Invited\x00 two"
    data["hand_raisers"]["pages"] = ["Upgrade", "Pricing", "pricing"]
    del data["conversions"]
    found = problems(yaml.safe_dump(data))
    assert "format: this pqlbot reads model format 1, not 2" in found
    assert any(p.startswith("signals[0].label: contains a control character") for p in found), found
    assert "hand_raisers.pages[2]: 'pricing' repeats hand_raisers.pages[1]" in found
    assert any(p.startswith("conversions: is required") for p in found)


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_export_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    for target in (str(tmp_path), str(tmp_path / "no" / "such" / "m.yaml")):
        out = _cli(tmp_path, "model", "export", target)
        assert out.returncode == 2 and "cannot write" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_pqlbot_model_is_the_first_model_whichever_command_runs_first(tmp_path: Path) -> None:
    custom = DEFAULT.replace("threshold: 45", "threshold: 50")
    (tmp_path / "ours.yaml").write_text(custom, encoding="utf-8")
    env = {"PQLBOT_MODEL": str(tmp_path / "ours.yaml")}
    assert _cli(tmp_path, "db", "upgrade", env=env).returncode == 0
    exported = _cli(tmp_path, "model", "export", env=env)
    assert "threshold: 50" in exported.stdout, exported.stdout


def test_a_big_model_is_shown_whole_within_slacks_limits(server: LiveServer, tmp_path: Path) -> None:
    data = model_to_dict(default_model())
    data["signals"] += [
        {"id": f"extra_{i}", "label": "L" * 100, "events": [f"Event {i} {'x' * 150}", "Other"], "points": 1}
        for i in range(95)
    ]
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    from bot.model_admin import import_text

    assert import_text(server.runtime.services, text=(tmp_path / "big.yaml").read_text(), by="cli:test")
    shown = server.command("model")
    for i in range(95):
        assert f"extra_{i}" in shown
    message = server.slack.responses[-1][1]
    assert len(message["blocks"]) <= MAX_BLOCKS
    assert all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION for b in message["blocks"])
    history = server.command("model history")
    assert "rollback" in history


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("threshold 0000000050", "threshold 45 → 50"),
        ("threshold 71", "cannot be reached"),
        ('signal add r6 "unclosed 1 5', "A quote is not closed"),
        ("handraiser add path", "Give the path after `path`"),
        ("model rollback vv1", "The version must be a whole number"),
    ],
)
def test_admin_commands_read_arguments_as_meant(server: LiveServer, command: str, expected: str) -> None:
    assert expected in server.command(command, user=ADMIN)


def test_the_same_signal_in_other_words_changes_nothing(server: LiveServer) -> None:
    assert "Model *v2* is live" in server.command('signal add reports "Report Exported" 3 10 7d', user=ADMIN)
    again = server.command('signal add reports "report   exported" 3 10 7d', user=ADMIN)
    assert "already exists just like that" in again, again
    assert texts(server.command("model history")).count("v3") == 0


def test_control_characters_in_a_command_never_reach_the_database(any_server: LiveServer) -> None:
    """PostgreSQL refuses NUL in text: a command carrying one must still get a real answer."""
    assert "Sorry" not in any_server.command("account nort\x00hwind")
    answer = any_server.command("handraiser add foo\x00bar", user=ADMIN)
    assert "Sorry" not in answer and "foobar" in answer, answer
