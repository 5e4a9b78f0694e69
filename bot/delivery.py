"""Delivers the alert outbox to Slack: once each, retried with backoff, ts stored.

A worker leases due alerts (a compare-and-set in the database, so any number of processes can
run one), posts each with chat.postMessage, and stores the channel and ts. Slack's 429s are
waited out by slack-sdk's own retry handler (it honours Retry-After); 5xx, network errors and
`ok: false` answers are retried here with exponential backoff for up to a day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import aiohttp
import anyio
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import render_alert
from bot.render import Message
from bot.services import Services
from storage import outbox
from storage.tables import Alert, Lead, pk

log = logging.getLogger("pqlbot.delivery")

LEASE = timedelta(minutes=2)
GIVE_UP_AFTER = timedelta(hours=24)
MAX_BACKOFF = timedelta(hours=1)
POLL_SECONDS = 5.0
HINTS = {
    "not_in_channel": "invite the bot to the channel (/invite @pqlbot)",
    "channel_not_found": "check PQLBOT_ALERT_CHANNEL is the channel's ID and the bot can see it",
    "invalid_auth": "check SLACK_BOT_TOKEN",
    "token_revoked": "reinstall the app and update SLACK_BOT_TOKEN",
    "missing_scope": "add the chat:write scope and reinstall the app",
}


def slack_client(token: str, base_url: str, *, reconnect: bool = True, timeout: int = 15) -> AsyncWebClient:
    """slack-sdk's client with its own retry handlers: 429s wait for Retry-After, 5xx retried.
    `reconnect` also retries a dropped connection, which is right for reads and updates but not
    for posting an alert: the post may have landed before the connection dropped."""
    handlers: list[Any] = [
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]
    if reconnect:
        handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=2))
    return AsyncWebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers)


# A post that failed this way may still have reached Slack: look before posting again.
UNCERTAIN = "uncertain"
METADATA_TYPE = "pqlbot_alert"
HISTORY_REACH = timedelta(days=2)


def _uncertain(alert: Alert) -> bool:
    """Whether an earlier attempt may have posted this alert: no answer came back, or the
    worker stopped mid-delivery (its lease ran out with no error recorded)."""
    if alert.attempts <= 1:
        return False
    return alert.last_error is None or alert.last_error.startswith(UNCERTAIN)


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=30 * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


class Delivery:
    def __init__(self, services: Services, client: AsyncWebClient):
        self.services = services
        self.client = client
        # Posts go through a client that never re-sends by itself (see slack_client).
        self.poster = AsyncWebClient(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            retry_handlers=[h for h in client.retry_handlers if not isinstance(h, AsyncConnectionErrorRetryHandler)],
        )
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned_no_channel = False

    def wake(self) -> None:
        """Ask the worker to look at the outbox now (callable from any thread)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            try:
                await self.deliver_due()
            except Exception:
                log.exception("alert delivery failed; will try again")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=POLL_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()

    async def deliver_due(self) -> int:
        channel = self.services.settings.alert_channel
        if not channel:
            if not self._warned_no_channel:
                log.warning("PQLBOT_ALERT_CHANNEL is not set: alerts wait in the outbox until it is")
                self._warned_no_channel = True
            return 0
        sent = 0
        while True:
            batch = await anyio.to_thread.run_sync(self._take)
            if not batch:
                return sent
            for alert, claimed_by in batch:
                sent += await self._deliver(alert, claimed_by, channel)

    def _take(self) -> list[tuple[Alert, str | None]]:
        now = self.services.clock()
        with self.services.db.write() as s:
            alerts = outbox.take_due(session=s, now=now, lease=LEASE)
            out = []
            for alert in alerts:
                lead = s.get(Lead, alert.lead_id) if alert.lead_id else None
                out.append((alert, lead.claimed_by if lead else None))
            return out

    async def _deliver(self, alert: Alert, claimed_by: str | None, channel: str) -> int:
        now = self.services.clock()
        message = render_alert(alert, claimed_by=claimed_by, now=now)
        thread: dict[str, Any] = {}
        if alert.kind == "reminder":
            # In the thread of the alert it is about, wherever that was posted.
            channel = str(alert.context.get("channel") or channel)
            thread = {"thread_ts": str(alert.context.get("thread_ts"))}
        found = await self._already_posted(alert, channel) if _uncertain(alert) else None
        if found is not None:
            posted_to, ts = found
            log.info("alert %s had reached Slack before (%s); not posting it again", alert.id, ts)
        else:
            try:
                resp = await self.poster.chat_postMessage(
                    channel=channel,
                    text=message.text,
                    blocks=message.blocks,
                    unfurl_links=False,
                    unfurl_media=False,
                    # Marks the message as this alert, so a post whose answer never came back
                    # can be found instead of posted twice.
                    metadata={"event_type": METADATA_TYPE, "event_payload": {"alert_id": alert.id}},
                    **thread,
                )
            except SlackApiError as exc:
                code = str(exc.response.get("error", "error")) if exc.response is not None else "error"
                await self._retry(alert, f"Slack answered {code}", HINTS.get(code))
                return 0
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
                await self._retry(alert, f"network error: cannot connect ({type(exc).__name__})", None)
                return 0
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                await self._retry(alert, f"{UNCERTAIN}: no answer from Slack ({type(exc).__name__})", None)
                return 0
            data: dict[str, Any] = resp.data if isinstance(resp.data, dict) else {}
            ts = str(data.get("ts") or "")
            posted_to = str(data.get("channel") or channel)
        now_shown = await anyio.to_thread.run_sync(self._mark_sent, alert, posted_to, ts, message)
        log.info("alert %s (%s) posted to %s", alert.id, alert.kind, posted_to)
        if now_shown is not None and ts:
            # Claimed while the post was in flight: show the claim on the message just posted.
            try:
                await self.client.chat_update(channel=posted_to, ts=ts, text=now_shown.text, blocks=now_shown.blocks)
            except SlackApiError as exc:
                log.warning("could not show the claim on alert %s: %s", alert.id, exc.response.get("error"))
        return 1

    async def _already_posted(self, alert: Alert, channel: str) -> tuple[str, str] | None:
        """(channel, ts) of this alert if an earlier attempt posted it after all, found by its
        metadata in the channel's recent history; None if it is not there or cannot be looked
        for (then it is posted: a rare duplicate beats a lost alert)."""
        oldest = f"{(alert.created_at - timedelta(minutes=1)).timestamp():.6f}"
        try:
            kwargs: dict[str, Any] = {"channel": channel, "oldest": oldest, "include_all_metadata": True, "limit": 200}
            if alert.kind == "reminder":
                resp = await self.client.conversations_replies(ts=str(alert.context.get("thread_ts")), **kwargs)
            else:
                resp = await self.client.conversations_history(**kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) and exc.response is not None else exc
            log.warning("cannot check whether alert %s reached Slack (%s); posting it", alert.id, error)
            return None
        for msg in (resp.data if isinstance(resp.data, dict) else {}).get("messages") or []:
            meta = msg.get("metadata") or {}
            if (
                meta.get("event_type") == METADATA_TYPE
                and (meta.get("event_payload") or {}).get("alert_id") == alert.id
            ):
                return channel, str(msg.get("ts"))
        return None

    def _mark_sent(self, alert: Alert, channel: str, ts: str, posted: Message) -> Message | None:
        """Store where the alert was posted. If a claim happened since it was rendered (for its lead,
        or for any lead a bundle lists), the message as it should look now; else None."""
        with self.services.db.write() as s:
            now = self.services.clock()
            outbox.mark_sent(session=s, alert_id=pk(alert), channel=channel, ts=ts, now=now)
            lead = s.get(Lead, alert.lead_id) if alert.lead_id else None
            current = render_alert(alert, claimed_by=lead.claimed_by if lead else None, now=now, session=s)
            return current if current.blocks != posted.blocks else None

    async def _retry(self, alert: Alert, error: str, hint: str | None) -> None:
        now = self.services.clock()
        give_up = now - alert.created_at >= GIVE_UP_AFTER
        next_at = now + backoff(alert.attempts)
        if give_up:
            log.error(
                "alert %s not delivered after %s attempts over a day (%s); giving up%s",
                alert.id,
                alert.attempts,
                error,
                f": {hint}" if hint else "",
            )
        else:
            log.warning(
                "alert %s not delivered (%s); retrying at %s%s",
                alert.id,
                error,
                next_at.strftime("%H:%M:%S"),
                f": {hint}" if hint else "",
            )

        def mark() -> None:
            with self.services.db.write() as s:
                outbox.mark_retry(
                    session=s,
                    alert_id=pk(alert),
                    error=error,  # type: ignore[arg-type]
                    next_at=next_at,
                    give_up=give_up,
                )

        await anyio.to_thread.run_sync(mark)
