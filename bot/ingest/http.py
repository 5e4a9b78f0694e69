"""Ingest over HTTP: bounded body reading, gzip, write-key auth, JSON answers."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from sqlalchemy.exc import OperationalError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.ingest import segment
from bot.ingest.segment import BadRequest
from scoring import Event

log = logging.getLogger("pqlbot.ingest")


class Unauthorized(Exception):
    pass


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status_code=status)


OK = {"success": True}
NO_KEY = "missing or unknown write key (send it as the Basic auth user name)"


def refused(request: Request, status: int, message: str) -> JSONResponse:
    """A refusal, logged (without the key or the body) so a misconfigured sender can be found."""
    client = request.client.host if request.client else "unknown"
    log.info("refused %s %s from %s: %d %s", request.method, request.url.path, client, status, message[:200])
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
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise BadRequest(f"body is over the {limit // 1024} KB limit", 413)
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
    except (binascii.Error, UnicodeDecodeError):
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
            body = await read_body(request, limit)
            payload = segment.parse_json(body)
            if not authorised and not (isinstance(payload, dict) and key_matches(payload.get("writeKey"), configured)):
                return refused(request, 401, NO_KEY)
            events = segment.parse_request(payload, route_type, received_at)
        except BadRequest as exc:
            if not authorised:
                return refused(request, 401, NO_KEY)
            return refused(request, exc.status, str(exc))
        if events:
            try:
                await anyio.to_thread.run_sync(ingest, events)
            except OperationalError:
                log.exception("storage unavailable while ingesting %d events", len(events))
                return error(503, "storage is unavailable; retry later")
        return JSONResponse(OK)

    return endpoint
