"""Segment's HTTP Tracking API (also what RudderStack's clients speak) → scoring.Event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from bot.ingest import clean
from bot.ingest.clean import FieldError
from scoring import Event

TYPES = ("track", "identify", "group", "page", "screen", "alias")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 5000


class BadRequest(ValueError):
    """The request cannot be used; `status` is 400 or 413 and str() says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON ({str(exc).split(':')[0]})") from None


def messages_of(
    payload: Any, route_type: str | None, max_messages: int = MAX_BATCH_MESSAGES
) -> tuple[list[Any], Any, dict[str, Any]]:
    """The messages a request carries, the batch-level sentAt and what the batch-level context
    may lend its messages (groupId and page path only: never traits, which would be copied into
    every message)."""
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    if route_type is None:
        batch = payload.get("batch")
        if not isinstance(batch, list):
            raise BadRequest("body must have a `batch` array of messages")
        if len(batch) > max(max_messages, MAX_BATCH_MESSAGES):
            raise BadRequest(f"batch has {len(batch)} messages; at most {MAX_BATCH_MESSAGES}", 413)
        context = payload.get("context")
        shared: dict[str, Any] = {}
        if isinstance(context, dict):
            if isinstance(context.get("groupId"), (str, int)):
                shared["groupId"] = context["groupId"]
            page = context.get("page")
            if isinstance(page, dict) and isinstance(page.get("path"), str):
                shared["page"] = {"path": page["path"][: clean.MAX_PATH]}
        return batch, payload.get("sentAt"), shared
    return [payload], payload.get("sentAt"), {}


def parse_request(
    payload: Any,
    route_type: str | None,
    received_at: datetime,
    *,
    source: str = "segment",
    max_messages: int = MAX_BATCH_MESSAGES,
) -> list[Event]:
    """Validate every message of a request; the first problem refuses the whole request."""
    messages, batch_sent_at, batch_context = messages_of(payload, route_type, max_messages)
    try:
        sent_at = clean.timestamp(batch_sent_at, "sentAt")
    except FieldError as exc:
        raise BadRequest(str(exc)) from None
    events = []
    for index, msg in enumerate(messages):
        where = f"message {index}" if route_type is None else "message"
        try:
            if isinstance(msg, dict):
                for key, value in msg.items():
                    if clean.depth(value) > clean.MAX_DEPTH:
                        raise BadRequest(
                            f"{where}: {str(key)[:40]!r} is nested more than {clean.MAX_DEPTH} levels deep"
                        )
            if route_type is None and len(orjson.dumps(msg)) > MAX_MESSAGE_BYTES:
                raise BadRequest(f"{where} is over the 32 KB limit of a single message", 413)
            events.append(parse_message(msg, route_type, received_at, sent_at, batch_context, source))
        except FieldError as exc:
            raise BadRequest(f"{where}: {exc}") from None
    return events


def parse_message(
    msg: Any,
    route_type: str | None,
    received_at: datetime,
    batch_sent_at: datetime | None,
    batch_context: dict[str, Any],
    source: str,
) -> Event:
    if not isinstance(msg, dict):
        raise FieldError("must be a JSON object")
    kind = route_type or msg.get("type")
    if not isinstance(kind, str) or kind.lower() not in TYPES:
        raise FieldError(f"type must be one of {', '.join(TYPES)}")
    kind = kind.lower()
    user_id = clean.identifier(msg.get("userId"), "userId")
    anonymous_id = clean.identifier(msg.get("anonymousId"), "anonymousId")
    context = clean.mapping(msg.get("context"), "context") or batch_context
    previous_id = None
    if kind == "alias":
        previous_id = clean.identifier(msg.get("previousId"), "previousId")
        if previous_id is None or user_id is None:
            raise FieldError("an alias needs both previousId and userId")
    elif user_id is None and anonymous_id is None:
        raise FieldError("needs a userId or an anonymousId")
    group_id = clean.identifier(msg.get("groupId"), "groupId") if kind == "group" else None
    if kind == "group" and group_id is None:
        raise FieldError("a group call needs a groupId")
    if group_id is None:  # read before NULs are scrubbed from the context, like any other id
        raw = msg.get("context")
        raw_context: dict[str, Any] = raw if isinstance(raw, dict) else batch_context
        group_id = clean.identifier(raw_context.get("groupId"), "context.groupId")
    properties = clean.mapping(msg.get("properties"), "properties")
    traits = clean.mapping(msg.get("traits"), "traits") if kind in ("identify", "group") else {}
    if kind == "identify" and not traits and isinstance(msg.get("context"), dict):
        traits = clean.mapping(msg["context"].get("traits"), "context.traits")
    name = None
    path = None
    if kind == "track":
        name = clean.text(msg.get("event"), "event", required=True)
    elif kind in ("page", "screen"):
        name = clean.text(msg.get("name"), "name")
        path = clean.text(properties.get("path"), "properties.path", limit=clean.MAX_PATH)
        page = context.get("page")
        if path is None and isinstance(page, dict):
            path = clean.text(page.get("path"), "context.page.path", limit=clean.MAX_PATH)
    message_id = _message_id(msg.get("messageId"))
    # Clients send the device time as `timestamp`; some send it as `originalTimestamp`.
    ts = clean.timestamp(msg.get("timestamp"), "timestamp")
    if ts is None:
        ts = clean.timestamp(msg.get("originalTimestamp"), "originalTimestamp")
    msg_sent_at = clean.timestamp(msg.get("sentAt"), "sentAt") or batch_sent_at
    at, clamped = clean.event_time(ts, msg_sent_at, received_at)
    return Event(
        message_id=message_id,
        kind=kind,  # type: ignore[arg-type]
        timestamp=at,
        received_at=received_at,  # type: ignore[arg-type]
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=name,
        path=path,
        group_id=group_id,
        previous_id=previous_id,
        properties=properties,
        traits=traits,
        source=source,
        flags=("future_timestamp",) if clamped else (),
    )


def _message_id(value: Any) -> str:
    """The message's id; a client that sends none (or "null", "undefined") gets a fresh one, so
    the message is stored, just not de-duplicated."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        raw = str(value).strip()
        if raw and raw.casefold() not in clean.JUNK_IDS:
            return clean.identifier(raw, "messageId") or raw
    elif value is not None:
        raise FieldError("messageId must be a string")
    return f"pqlbot-{uuid.uuid4()}"
