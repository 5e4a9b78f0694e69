"""Slack's request signature, checked before anything else reads the request."""

from __future__ import annotations

import re
from collections.abc import Mapping

from slack_sdk.signature import SignatureVerifier

_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")


def signed_by_slack(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when the body carries a valid, fresh (±5 minutes) Slack signature.

    Malformed headers (a float timestamp, a non-ASCII signature) are simply invalid: the
    verifier itself would raise on them.
    """
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
        return False
    return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
