"""Messages are escaped for Slack exactly once and always fit Block Kit's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.render import MAX_BLOCKS, Message, Trusted, cut, escape, fit, mention, render, short

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_escape_is_exactly_amp_lt_gt_and_never_html() -> None:
    assert escape("<!channel> & <@U1> \"quoted\" 'single'") == "&lt;!channel&gt; &amp; &lt;@U1&gt; \"quoted\" 'single'"


def test_templates_escape_every_value_once() -> None:
    message = render("notice.json.j2", text='Tom & Jerry <!here> said "hi" \\ done')
    body = json.dumps(message.as_kwargs())
    assert "&amp;" in body and "&lt;!here&gt;" in body
    assert "&amp;amp;" not in body and "<!here>" not in body
    assert message.blocks[0]["text"]["text"] == 'Tom &amp; Jerry &lt;!here&gt; said "hi" \\ done'


def test_mentions_are_only_built_from_real_user_ids() -> None:
    assert mention("U012AB3CD") == "<@U012AB3CD>" and isinstance(mention("U012AB3CD"), Trusted)
    assert not isinstance(mention("<!channel>"), Trusted)
    message = render("claimed_by_other.json.j2", name="Acme", holder="U0REP1", at=None, now=NOW)
    assert "<@U0REP1>" in message.blocks[0]["text"]["text"]
    forged = render("claimed_by_other.json.j2", name="Acme", holder="U1> <!channel", at=None, now=NOW)
    assert "<!channel>" not in json.dumps(forged.as_kwargs())


def test_cut_never_splits_an_entity_or_a_mention() -> None:
    text = "a" * 95 + "&amp;" + "b" * 10
    out = cut(text, 98)
    assert out.endswith("…") and len(out) <= 98 and "&am" not in out.replace("&amp;", "")
    mention_text = "x" * 90 + "<@U12345678> tail"
    out = cut(mention_text, 95)
    assert "<@U" not in out and out.endswith("…")


def test_short_shortens_names_before_escaping() -> None:
    assert short("a" * 100, 10) == "a" * 9 + "…"
    assert short("  spaced\n name ", 50) == "spaced name"


def test_fit_holds_a_message_to_block_kit_limits() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 5000}} for _ in range(70)]
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "h" * 400}})
    blocks.insert(
        0,
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "b" * 100}, "value": "1", "action_id": "a"}
            ],
        },
    )
    out = fit(Message(text="t" * 50_000, blocks=blocks))
    assert len(out.blocks) == MAX_BLOCKS
    assert "more" in out.blocks[-1]["elements"][0]["text"]
    assert all(len(b["text"]["text"]) <= 3000 for b in out.blocks if b["type"] == "section")
    assert len(out.blocks[0]["elements"][0]["text"]["text"]) <= 75
    assert len(out.text) <= 3000


def test_a_hand_raiser_footer_states_the_live_cooldown_for_the_subject() -> None:
    base = {
        "kind": "hand_raiser",
        "lead_id": 7,
        "what": "Billing",
        "raised_at": datetime(2026, 12, 1, tzinfo=UTC).isoformat(),
        "who": {"display": "Ada", "email": None, "role": None},
        "subject": {"kind": "user", "name": "Ada"},
        "score": 10,
        "threshold": 45,
        "signals": [],
    }
    lone = json.dumps(render("hand_raiser_alert.json.j2", a={**base, "cooldown_hours": 48}, claimed_by=None).blocks)
    assert "at most once every 2 days per person" in lone
    odd = json.dumps(render("hand_raiser_alert.json.j2", a={**base, "cooldown_hours": 6}, claimed_by=None).blocks)
    assert "at most once every 6 hours per person" in odd and "a day" not in odd
