"""Clock-driven work on APScheduler: re-evaluating scores as time passes."""

from __future__ import annotations

import logging

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.services import Services

log = logging.getLogger("pqlbot.jobs")


def reevaluate(services: Services) -> None:
    """Apply time-based rules (windows sliding, inactivity) without waiting for new events."""
    result = services.pipeline.rescore_all()
    log.info(
        "re-evaluated %d users and %d accounts: %d scores changed, %d crossed, %d cooled",
        result.users,
        result.accounts,
        result.changed,
        len(result.crossed),
        len(result.cooled),
    )


def scheduler(services: Services) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone=services.settings.zone)

    async def _reevaluate() -> None:
        await anyio.to_thread.run_sync(reevaluate, services)

    sched.add_job(
        _reevaluate, IntervalTrigger(hours=1), id="reevaluate", coalesce=True, max_instances=1, misfire_grace_time=3600
    )
    return sched
