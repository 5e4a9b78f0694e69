"""The one HTTP server: Slack endpoint, ingest routes, health; the delivery worker and jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from bot.clock import Clock, utcnow
from bot.delivery import Delivery, slack_client
from bot.errors import ConfigError
from bot.ingest.http import (
    BadRequest,
    mixpanel_endpoint,
    posthog_endpoint,
    read_body,
    segment_endpoint,
    segment_webhook_endpoint,
)
from bot.jobs import scheduler
from bot.pipeline import Pipeline
from bot.services import Services
from bot.settings import HINTS, Settings
from bot.slack import listeners
from bot.slack.verify import signed_by_slack
from scoring.model import ModelError, load_model
from storage import Database
from storage import jobs as jobs_store
from storage import outbox as outbox_store

log = logging.getLogger("pqlbot.app")


class _NoTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and then notes that our client's token wins: noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be unused" not in record.getMessage()


logging.getLogger("pqlbot.bolt").addFilter(_NoTokenNotice())
MAX_SLACK_BODY = 1024 * 1024
SEGMENT_ROUTES = ("batch", "track", "identify", "group", "page", "screen", "alias")


class Runtime:
    """Everything one server process runs, wired together."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        db: Database | None = None,
        client: AsyncWebClient | None = None,
        run_scheduler: bool = True,
    ):
        self.settings = settings
        self.db = db or Database(settings.database_url)
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else "xoxb-unset"
        self.client = client or slack_client(token, settings.slack_api_url)
        model_text = _read_model(settings)
        self.pipeline = Pipeline(self.db, clock=clock, on_alert=self._wake, initial_model=model_text)
        self.services = Services(settings=settings, db=self.db, pipeline=self.pipeline, clock=clock)
        self.delivery = Delivery(self.services, self.client)
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
            logger=logging.getLogger("pqlbot.bolt"),
        )
        # Without a signing secret (maintenance commands) no Slack request can be valid.
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
        self.verifier = SignatureVerifier(secret or secrets.token_hex(32))
        listeners.register(self.bolt, self.services)
        self.run_scheduler = run_scheduler

    def _wake(self) -> None:
        self.delivery.wake()

    def prepare(self) -> None:
        """Migrate the schema and install the first model (blocking; before serving)."""
        self.db.upgrade()
        self.pipeline.ensure_model()

    # --- routes ----------------------------------------------------------------------------

    async def slack_events(self, request: Request) -> Response:
        try:
            body = await read_body(request, MAX_SLACK_BODY)
        except BadRequest as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        if not signed_by_slack(self.verifier, body, request.headers):
            log.warning(
                "refused a request to /slack/events: missing, invalid or stale Slack signature "
                "(if this is Slack, check SLACK_SIGNING_SECRET and the server's clock)"
            )
            return PlainTextResponse("invalid signature", status_code=401)
        retry, reason = request.headers.get("x-slack-retry-num"), request.headers.get("x-slack-retry-reason")
        if retry and reason == "http_timeout":
            # Slack gave up waiting for an answer pqlbot was still working on: that first try is
            # doing the work, so this one does nothing (claims and model changes are
            # compare-and-set anyway; this spares people a second reply).
            log.info("Slack retried a request after a timeout (retry %s); the first try handles it", retry[:8])
            return PlainTextResponse("", status_code=200, headers={"X-Slack-No-Retry": "1"})
        try:
            bolt_request = to_async_bolt_request(request, body)  # decodes UTF-8 and parses the body
            bolt_response = await self.bolt.async_dispatch(bolt_request)
        except (UnicodeDecodeError, ValueError, TypeError, AttributeError, KeyError):
            log.warning("refused a signed Slack request whose body pqlbot cannot read")
            return PlainTextResponse("body is not a Slack request", status_code=400)
        return to_starlette_response(bolt_response)

    async def health(self, request: Request) -> Response:
        def check() -> dict[str, Any] | None:
            if not self.db.ping():
                return None
            with self.db.read() as s:
                return {
                    "counts": outbox_store.counts(session=s),
                    "failed": outbox_store.last_failure(session=s),
                    "jobs": {
                        j.name: {
                            "last_due": j.last_due.isoformat() if j.last_due else None,
                            "last_finished": j.last_finished_at.isoformat() if j.last_finished_at else None,
                            **({"last_error": j.last_error} if j.last_error else {}),
                        }
                        for j in jobs_store.statuses(session=s)
                    },
                }

        found = await anyio.to_thread.run_sync(check)
        if found is None:
            return JSONResponse({"status": "unavailable", "details": {"database": "not answering"}}, status_code=503)
        counts = found["counts"]
        alerts: dict[str, Any] = {k: counts.get(k, 0) for k in ("pending", "sent", "failed")}
        if found["failed"]:
            alerts["last_failure"] = found["failed"]
        details = {
            "database": "ok",
            "alerts": alerts,
            "alert_channel": "set" if self.settings.alert_channel else "not set",
            "jobs": found["jobs"],
        }
        return JSONResponse({"status": "ok", "details": details})

    def routes(self) -> list[BaseRoute]:
        keys = self.settings.write_key_values
        segment: list[BaseRoute] = []
        for name in SEGMENT_ROUTES:
            endpoint = segment_endpoint(
                None if name == "batch" else name, keys=keys, ingest=self.pipeline.ingest, clock=self.pipeline.clock
            )
            segment.append(Route(f"/{name}", endpoint, methods=["POST"]))
            # analytics.js posts to /t, /i, /p, /g, /a, /s (first letter of the type) and /b.
            segment.append(Route(f"/{name[0]}", endpoint, methods=["POST"]))
        # Browsers send events from the product's own pages: allow any origin (a write key is
        # public in browser code anyway; no cookies are read).
        cors = Middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
            max_age=86400,
        )
        settings = self.settings
        mixpanel = [
            Route(
                f"/{name}",
                mixpanel_endpoint(
                    name,
                    keys=keys,
                    ingest=self.pipeline.ingest,
                    clock=self.pipeline.clock,
                    group_key=lambda: settings.mixpanel_group_key,
                ),
                methods=["POST"],
            )
            for name in ("track", "engage", "groups", "import")
        ]
        posthog = posthog_endpoint(
            keys=keys,
            ingest=self.pipeline.ingest,
            clock=self.pipeline.clock,
            group_type=lambda: settings.posthog_group_type,
        )
        # The PostHog clients post to <host>/batch/ (the SDKs) and <host>/capture/ (the API).
        posthog_routes = [Route(p, posthog, methods=["POST"]) for p in ("/batch/", "/batch", "/capture/", "/capture")]
        webhook = segment_webhook_endpoint(
            secret=lambda: (
                settings.segment_webhook_secret.get_secret_value() if settings.segment_webhook_secret else None
            ),
            ingest=self.pipeline.ingest,
            clock=self.pipeline.clock,
        )
        return [
            Route("/slack/events", self.slack_events, methods=["POST"]),
            Route("/ingest/segment-webhook", webhook, methods=["POST"]),
            Mount("/mixpanel", app=Starlette(routes=mixpanel, middleware=[cors])),
            Mount("/posthog", app=Starlette(routes=posthog_routes, middleware=[cors])),
            Route("/healthz", self.health, methods=["GET"]),
            Mount("/v1", app=Starlette(routes=segment, middleware=[cors])),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(self.delivery.run(), name="pqlbot-delivery")
        sched = scheduler(self.services) if self.run_scheduler else None
        if sched is not None:
            sched.start()
        socket_mode = None
        if self.settings.slack_app_token is not None:
            # Slack traffic over a WebSocket pqlbot opens (no public URL); ingest stays on HTTP.
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_mode = AsyncSocketModeHandler(self.bolt, self.settings.slack_app_token.get_secret_value())
            await socket_mode.connect_async()
            log.info("connected to Slack over Socket Mode")
        try:
            yield
        finally:
            if socket_mode is not None:
                await socket_mode.close_async()
            if sched is not None:
                sched.shutdown(wait=False)
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self.db.dispose()

    def asgi(self) -> Starlette:
        return Starlette(routes=self.routes(), lifespan=self.lifespan)


def _read_model(settings: Settings) -> str | None:
    """The PQLBOT_MODEL file's text, checked now so a bad file stops start-up with one line."""
    if settings.model_path is None:
        return None
    try:
        text = settings.model_path.read_text("utf-8")
        load_model(text, complete=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"PQLBOT_MODEL names a file pqlbot cannot read ({type(exc).__name__}): {HINTS['PQLBOT_MODEL']}"
        ) from None
    except ModelError as exc:
        raise ConfigError(
            f"PQLBOT_MODEL {settings.model_path} is not a valid model: {'; '.join(exc.problems)}"
        ) from None
    return text
