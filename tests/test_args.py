"""Slash-command text as Slack really sends it."""

from __future__ import annotations

import pytest

from bot.slack.args import split, unslack


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("weight integration_activated 30", ["weight", "integration_activated", "30"]),
        ("  top   5 ", ["top", "5"]),
        ("score <mailto:ada@northwind.example|ada@northwind.example>", ["score", "ada@northwind.example"]),
        ("claim <@U123ABC|ada>", ["claim", "U123ABC"]),
        ("account <https://acme.example|acme.example>", ["account", "acme.example"]),
        ("account <#C123|sales>", ["account", "C123"]),
        ("handraiser add “Plan Upgraded”", ["handraiser", "add", "Plan Upgraded"]),
        ("handraiser add ‘Plan Upgraded’", ["handraiser", "add", "Plan Upgraded"]),
        ('account "Margie\'s Travel"', ["account", "Margie's Travel"]),
        ("account O'Brien's Bakery", ["account", "O'Brien's", "Bakery"]),
        ('account "unclosed quote', ["account", "unclosed", "quote"]),
        ("account Tom &amp; Jerry", ["account", "Tom", "&", "Jerry"]),
        ("", []),
    ],
)
def test_split(text: str, words: list[str]) -> None:
    assert split(text) == words


def test_unslack_drops_broadcasts_but_keeps_their_label() -> None:
    assert unslack("hi <!channel>") == "hi "
    assert unslack("<!subteam^S123|@sales>") == "@sales"


def test_huge_text_is_bounded() -> None:
    assert len(unslack("x" * 100_000)) <= 2000
