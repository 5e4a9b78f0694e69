"""Ingest over HTTP: bounded body reading, gzip, write-key auth, JSON answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import anyio
from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from bot.ingest import clean, segment, vendors
from bot.ingest.segment import BadRequest
from scoring import Event
from scoring.events import ONLY_GAPS

log = logging.getLogger("pqlbot.ingest")


class Unauthorized(Exception):
    pass


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status_code=status)


OK = {"success": True}
NO_KEY = "missing or unknown write key (send it as the Basic auth user name)"
BODY_SECONDS = 30  # a sender that has not finished its body by then is cut off (slow-loris)


def loggable(text: str, limit: int = 200) -> str:
    """`text` (from a client) safe for one log line: control characters escaped, so a sender
    cannot start a forged line of its own."""
    return clean.escape_controls(text[:limit])


def log_refusal(request: Request, status: int, message: str) -> None:
    """A refusal, logged (without the key or the body) so a misconfigured sender can be found."""
    client = request.client.host if request.client else "unknown"
    log.info("refused %s %s from %s: %d %s", request.method, request.url.path, client, status, loggable(message))


def refused(request: Request, status: int, message: str) -> JSONResponse:
    log_refusal(request, status, message)
    return error(status, message)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, inflated when gzip-encoded, never more than `limit` bytes of either."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BadRequest(f"body is over the {limit // 1024} KB limit", 413)
    raw = bytearray()
    try:
        with anyio.fail_after(BODY_SECONDS):
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > limit:
                    raise BadRequest(f"body is over the {limit // 1024} KB limit", 413)
    except TimeoutError:
        raise BadRequest(f"the body did not arrive within {BODY_SECONDS} seconds", 408) from None
    except ClientDisconnect:
        raise BadRequest("the client went away before its body arrived", 400) from None
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return bytes(raw)
    if encoding != "gzip":
        raise BadRequest(f"Content-Encoding {encoding[:20]!r} is not supported; send gzip or nothing", 415)
    return inflate(bytes(raw), limit)


def inflate(data: bytes, limit: int) -> bytes:
    """Gunzip at most `limit` bytes; stop reading at the cap (a gzip bomb never expands).

    A body may hold several gzip members one after another (as `cat a.gz b.gz` makes); anything
    else after the last member is refused rather than silently dropped.
    """
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise BadRequest("body is not valid gzip") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise BadRequest(f"body is over the {limit // 1024} KB limit once inflated", 413)
        if not inflater.eof:
            raise BadRequest("body is truncated gzip")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)
        if not rest.startswith(b"\x1f\x8b"):
            raise BadRequest("body has bytes after its gzip data")


def basic_user(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
        return None
    return decoded.partition(":")[0]


def key_matches(candidate: Any, keys: Sequence[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if not isinstance(candidate, str) or not candidate or not keys:
        return False
    given = candidate.encode("utf-8", "replace")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


IngestFn = Callable[[list[Event]], Any]


def segment_endpoint(
    route_type: str | None, *, keys: Callable[[], Sequence[str]], ingest: IngestFn, clock: Callable[[], Any]
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint for one Segment route (`None` is /v1/batch)."""
    limit = segment.MAX_BATCH_BYTES if route_type is None else segment.MAX_MESSAGE_BYTES

    async def endpoint(request: Request) -> Response:
        received_at = clock()
        configured = keys()
        authorised = key_matches(basic_user(request), configured)
        if not configured or (
            not authorised and "authorization" in request.headers and basic_user(request) is not None
        ):
            return refused(
                request, 401, "unknown write key" if configured else "no write keys are configured (PQLBOT_WRITE_KEYS)"
            )
        try:
            # Without a Basic key the key may be in the body (older clients): read as much as a
            # batch may be, find the key, and only then hold a single message to its own limit.
            body = await read_body(request, limit if authorised else segment.MAX_BATCH_BYTES)
            payload = segment.parse_json(body)
        except BadRequest as exc:
            return refused(request, exc.status, str(exc)) if authorised else refused(request, 401, NO_KEY)
        if not authorised and not (isinstance(payload, dict) and key_matches(payload.get("writeKey"), configured)):
            return refused(request, 401, NO_KEY)
        if len(body) > limit:
            return refused(request, 413, "message is over the 32 KB limit of a single message")
        try:
            events = segment.parse_request(payload, route_type, received_at)
        except BadRequest as exc:
            return refused(request, exc.status, str(exc))
        if events:
            try:
                await anyio.to_thread.run_sync(ingest, events)
            except OperationalError:
                log.exception("storage unavailable while ingesting %d events", len(events))
                return error(503, "storage is unavailable; retry later")
        return JSONResponse(OK)

    return endpoint


def _matches_all(presented: set[str], configured: Sequence[str]) -> bool:
    return bool(presented) and all(key_matches(k, configured) for k in presented)


def mixpanel_endpoint(
    route: str,
    *,
    keys: Callable[[], Sequence[str]],
    ingest: IngestFn,
    clock: Callable[[], Any],
    group_key: Callable[[], str],
) -> Callable[[Request], Awaitable[Response]]:
    """/mixpanel/<route>, for the official Mixpanel clients given full endpoint URLs. The
    project token is the write key; answers {"status": 1}, or {"status": 0, "error": ...}."""

    def failed(request: Request, status: int, message: str) -> JSONResponse:
        log_refusal(request, status, message)
        return JSONResponse({"status": 0, "error": message}, status_code=status)

    async def endpoint(request: Request) -> Response:
        received_at = clock()
        configured = keys()
        if not configured:
            return failed(request, 401, "no write keys are configured (PQLBOT_WRITE_KEYS)")
        try:
            body = await read_body(request, segment.MAX_BATCH_BYTES)
            records, api_key = vendors.mixpanel_records(body, request.headers.get("content-type", "").lower())
            translated = vendors.mixpanel(route, records, group_key=group_key())
        except (BadRequest, UnicodeDecodeError) as exc:
            status = exc.status if isinstance(exc, BadRequest) else 400
            return failed(request, status, str(exc) if isinstance(exc, BadRequest) else "body is not UTF-8")
        # Every record carries the project token; the import API may instead authenticate the
        # whole request (Basic auth user or `api_key`), which counts only when it is a write key.
        vouched = route == "import" and (
            key_matches(basic_user(request), configured) or key_matches(api_key, configured)
        )
        if (translated.unkeyed and not vouched) or not (vouched or translated.keys):
            return failed(request, 401, "missing or unknown project token (it must be one of PQLBOT_WRITE_KEYS)")
        if translated.keys and not _matches_all(translated.keys, configured):
            return failed(request, 401, "missing or unknown project token (it must be one of PQLBOT_WRITE_KEYS)")
        return await _store(
            request, translated, received_at, ingest, "mixpanel", lambda s, m: failed(request, s, m), {"status": 1}
        )

    return endpoint


def posthog_endpoint(
    *,
    keys: Callable[[], Sequence[str]],
    ingest: IngestFn,
    clock: Callable[[], Any],
    group_type: Callable[[], str],
) -> Callable[[Request], Awaitable[Response]]:
    """/posthog/batch/ and /posthog/capture/, for the official PostHog clients given
    host=<pqlbot>/posthog. The project API key is the write key."""

    def failed(request: Request, status: int, message: str) -> JSONResponse:
        log_refusal(request, status, message)
        kind = "authentication_error" if status == 401 else "validation_error"
        return JSONResponse({"type": kind, "code": "invalid", "detail": message}, status_code=status)

    async def endpoint(request: Request) -> Response:
        received_at = clock()
        configured = keys()
        if not configured:
            return failed(request, 401, "no write keys are configured (PQLBOT_WRITE_KEYS)")
        try:
            body = await read_body(request, segment.MAX_BATCH_BYTES)
            body = vendors.posthog_body(
                body,
                request.query_params.get("compression", ""),
                request.headers.get("content-type", "").lower(),
                segment.MAX_BATCH_BYTES,
                inflate,
            )
            translated = vendors.posthog(segment.parse_json(body), group_type=group_type())
        except BadRequest as exc:
            return failed(request, exc.status, str(exc))
        if not _matches_all(translated.keys, configured):
            return failed(request, 401, "missing or unknown api_key (it must be one of PQLBOT_WRITE_KEYS)")
        return await _store(
            request, translated, received_at, ingest, "posthog", lambda s, m: failed(request, s, m), {"status": 1}
        )

    return endpoint


async def _store(
    request: Request,
    translated: vendors.Translated,
    received_at: Any,
    ingest: IngestFn,
    vendor: str,
    failed: Callable[[int, str], Response],
    ok: dict[str, Any],
) -> Response:
    """Validate the translated messages as the Segment routes do, then store them."""
    try:
        # The request's own size was checked against its records; one record may mean two
        # messages (an event and the traits it sets), which is not the sender's doing.
        events = segment.parse_request(
            {"batch": translated.messages}, None, received_at, source=vendor, max_messages=len(translated.messages)
        )
    except BadRequest as exc:
        return failed(exc.status, vendors.vendor_error(str(exc), vendor, translated.origin))
    if translated.once:
        events = [
            replace(ev, flags=(*ev.flags, ONLY_GAPS)) if i in translated.once else ev for i, ev in enumerate(events)
        ]
    if events:
        try:
            await anyio.to_thread.run_sync(ingest, events)
        except OperationalError:
            log.exception("storage unavailable while ingesting %d events", len(events))
            return failed(503, "storage is unavailable; retry later")
    return JSONResponse(ok)


def segment_webhook_endpoint(
    *, secret: Callable[[], str | None], ingest: IngestFn, clock: Callable[[], Any]
) -> Callable[[Request], Awaitable[Response]]:
    """Segment's Webhooks destination: one Segment message per request (or an array, or a
    batch), signed with X-Signature = hex HMAC-SHA1 of the body under the shared secret."""

    async def endpoint(request: Request) -> Response:
        received_at = clock()
        shared = secret()
        if not shared:
            return refused(request, 401, "no webhook secret is configured (PQLBOT_SEGMENT_WEBHOOK_SECRET)")
        try:
            body = await read_body(request, segment.MAX_BATCH_BYTES)
        except BadRequest as exc:
            return refused(request, exc.status, str(exc))
        expected = hmac.new(shared.encode(), body, hashlib.sha1).hexdigest()
        given = request.headers.get("x-signature", "").strip().lower()
        if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            return refused(request, 401, "missing or wrong X-Signature (check PQLBOT_SEGMENT_WEBHOOK_SECRET)")
        try:
            payload = segment.parse_json(body)
            if isinstance(payload, list):
                payload = {"batch": payload}
            route = None if isinstance(payload, dict) and "batch" in payload else "__each__"
            if route is not None:
                if len(body) > segment.MAX_MESSAGE_BYTES:
                    raise BadRequest("message is over the 32 KB limit of a single message", 413)
                payload = {"batch": [payload]}
            events = segment.parse_request(payload, None, received_at)
        except BadRequest as exc:
            return refused(request, exc.status, str(exc))
        if events:
            try:
                await anyio.to_thread.run_sync(ingest, events)
            except OperationalError:
                log.exception("storage unavailable while ingesting %d events", len(events))
                return error(503, "storage is unavailable; retry later")
        return JSONResponse(OK)

    return endpoint
