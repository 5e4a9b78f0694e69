"""What listeners, jobs and the CLI share: settings, database, pipeline, clock."""

from __future__ import annotations

from dataclasses import dataclass

from bot.clock import Clock, utcnow
from bot.pipeline import Pipeline
from bot.settings import Settings
from storage import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    pipeline: Pipeline
    clock: Clock = utcnow

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.settings.admins
