"""Bolt listeners: thin. Acknowledge at once, do the work in a thread, answer, update alerts."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import anyio
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands
from bot.commands import Reply, Update
from bot.errors import PqlbotError
from bot.model_admin import whole_number
from bot.services import Services

log = logging.getLogger("pqlbot.slack")
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")


def _oops() -> Reply:
    return commands.notice("Sorry, something went wrong on pqlbot's side; the error is in its log.")


_MESSAGE_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


async def _apply_updates(client: AsyncWebClient, updates: list[Update], services: Services) -> None:
    """Replace alert messages after a claim. Claims on one message (a bundle lists many leads)
    can finish in any order, so each is rendered from the database inside a lock on that
    message: whichever update is sent last shows every claim committed by then."""
    for u in updates:
        lock = _MESSAGE_LOCKS.setdefault((u.channel, u.ts), asyncio.Lock())
        async with lock:
            message = await anyio.to_thread.run_sync(commands.current_alert, services, u.alert_id)
            if message is not None:
                try:
                    await client.chat_update(channel=u.channel, ts=u.ts, text=message.text, blocks=message.blocks)
                except SlackApiError as exc:
                    log.warning("could not update alert %s in %s: %s", u.ts, u.channel, exc.response.get("error"))
        if not lock.locked() and len(_MESSAGE_LOCKS) > 1000:
            _MESSAGE_LOCKS.pop((u.channel, u.ts), None)


_ADMIN_CACHE: dict[str, tuple[float, bool]] = {}
ADMIN_CACHE_SECONDS = 300


async def workspace_admin(client: AsyncWebClient, user: str) -> bool:
    """Whether Slack says this person is a workspace admin or owner (users.info, cached briefly)."""
    cached = _ADMIN_CACHE.get(user)
    if cached and time.monotonic() - cached[0] < ADMIN_CACHE_SECONDS:
        return cached[1]
    try:
        info = await client.users_info(user=user)
    except SlackApiError as exc:
        log.warning("users.info failed (%s): treating the caller as not an admin", exc.response.get("error"))
        return False
    except Exception as exc:
        log.warning("users.info failed (%s): treating the caller as not an admin", type(exc).__name__)
        return False
    profile = info.get("user") or {}
    admin = bool(profile.get("is_admin") or profile.get("is_owner") or profile.get("is_primary_owner"))
    _ADMIN_CACHE[user] = (time.monotonic(), admin)
    return admin


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/pql")
    async def pql(ack: Any, command: dict[str, Any], respond: Any, client: AsyncWebClient) -> None:
        await ack()
        user = str(command.get("user_id", ""))
        text = str(command.get("text") or "")
        if not SLACK_USER.match(user):
            await respond(text="pqlbot could not tell who sent this command.", response_type="ephemeral")
            return
        admin = services.is_admin(user)
        if not admin and services.settings.slack_admins_are_admins and commands.needs_admin(text):
            admin = await workspace_admin(client, user)
        try:
            reply = await anyio.to_thread.run_sync(commands.answer, services, commands.Caller(user, admin), text)
        except Exception:
            log.exception("/pql %s failed", text.split(" ", 1)[0][:20])
            reply = _oops()
        await respond(
            text=reply.message.text,
            blocks=reply.message.blocks,
            response_type="in_channel" if reply.in_channel else "ephemeral",
            replace_original=False,
        )
        await _apply_updates(client, reply.updates, services)

    @app.action("claim_lead")
    async def claim(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        container = body.get("container") or {}
        lead_id = whole_number(str(action.get("value", "")))
        if not SLACK_USER.match(user) or lead_id is None or lead_id < 1:
            await respond(
                text="That button is not a lead pqlbot knows.", replace_original=False, response_type="ephemeral"
            )
            return
        clicked = (str(container.get("channel_id") or ""), str(container.get("message_ts") or ""))
        try:
            reply = await anyio.to_thread.run_sync(
                lambda: commands.claim_lead(services, lead_id=lead_id, user_id=user, clicked=clicked)
            )
        except PqlbotError as exc:
            reply = commands.notice(str(exc))
        except Exception:
            log.exception("claim of lead %s failed", lead_id)
            reply = _oops()
        if container.get("is_ephemeral"):
            # An ephemeral message can only be changed through its response_url; the alerts in
            # the channel are updated as for any claim.
            await respond(text=reply.message.text, blocks=reply.message.blocks, replace_original=True)
            await _apply_updates(client, reply.updates, services)
            return
        if reply.updates:
            await _apply_updates(client, reply.updates, services)
        else:
            await respond(
                text=reply.message.text, blocks=reply.message.blocks, replace_original=False, response_type="ephemeral"
            )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled Slack request error: %s", type(error).__name__)
