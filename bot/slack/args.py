"""Slash-command text as Slack sends it, turned into plain arguments.

Slack rewrites what people type: emails become `<mailto:a@b.co|a@b.co>`, mentions
`<@U123|ann>`, channels `<#C123|sales>`, links `<https://x.co|x.co>`, and the client turns
quotes into curly ones. We undo all of that before reading arguments.
"""

from __future__ import annotations

import re

MAX_TEXT = 2000
_ENTITY = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "‚": "'"})


def _unwrap(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith("mailto:"):
        return target.removeprefix("mailto:")
    if target.startswith(("@", "#")):
        return target[1:]
    if target.startswith("!"):
        return label or ""
    return label or target


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def unslack(text: str) -> str:
    """Plain text from Slack's formatted text (entities unwrapped, quotes straightened, control
    characters such as NUL dropped: no name pqlbot knows contains one)."""
    text = _ENTITY.sub(_unwrap, _CONTROL.sub("", text[:MAX_TEXT]))
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.translate(_QUOTES).replace("\u00a0", " ")


_WORD = re.compile(r'"([^"]*)"|(?:^|(?<=\s))\'([^\']*)\'(?=\s|$)|(\S+)')


class UnclosedQuote(ValueError):
    """A double quote that opens a name and never closes it."""


def split(text: str, *, strict: bool = False) -> list[str]:
    """Words of a command. Double quotes group words, as do single quotes around whole words;
    a stray apostrophe (O'Brien's) is just a letter. An unclosed double quote is dropped, or with
    `strict` (commands that take multi-word names, where the words after it would be read as
    other arguments) raises UnclosedQuote."""
    plain = unslack(text).strip()
    if strict and plain.count('"') % 2:
        raise UnclosedQuote(plain)
    words = []
    for m in _WORD.finditer(plain):
        word = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
        if m.group(3) is not None and word.startswith('"') and word.count('"') == 1:
            word = word[1:]
        words.append(word)
    return [w for w in words if w]
