"""One typed settings object, built once at start-up from the environment and `.env`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError
from storage.db import DatabaseURLError, normalise_url

DEFAULT_SLACK_API_URL = "https://slack.com/api/"

# What to tell someone who got a setting wrong: the variable, then how to fix it.
HINTS: dict[str, str] = {
    "DATABASE_URL": "set it to a SQLAlchemy URL such as sqlite:///pqlbot.db or "
    "postgresql://user:password@host:5432/pqlbot",
    "SLACK_BOT_TOKEN": "set it to the app's Bot User OAuth Token (starts with xoxb-) from "
    "api.slack.com/apps > your app > OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "set it to the Signing Secret from api.slack.com/apps > your app > Basic Information",
    "SLACK_API_URL": "set it to an http(s) URL such as https://slack.com/api/, or leave it unset",
    "SLACK_APP_TOKEN": "set it to an app-level token starting with xapp- (Basic Information > App-Level "
    "Tokens), or leave it unset to receive Slack requests over HTTP",
    "PQLBOT_WRITE_KEYS": "set it to one or more comma-separated write keys, e.g. PQLBOT_WRITE_KEYS=wk_live_1",
    "PQLBOT_ALERT_CHANNEL": "set it to the ID of the channel for alerts (starts with C or G; in Slack open "
    "the channel's details, the ID is at the bottom)",
    "PQLBOT_ADMINS": "set it to comma-separated Slack user IDs such as U012AB3CD (profile > ... > Copy member ID)",
    "PQLBOT_MODEL": "set it to the path of a scoring-model YAML file, or leave it unset for the default model",
    "PQLBOT_TIMEZONE": "set it to an IANA time zone such as UTC, Europe/Berlin or America/New_York",
    "PQLBOT_CLAIM_REMINDER_HOURS": "set it to a whole number of hours from 1 to 720, e.g. 24",
    "PQLBOT_REEVALUATE_MINUTES": "set it to a whole number of minutes from 5 to 1440, e.g. 60",
    "PQLBOT_SLACK_ADMINS_ARE_ADMINS": "set it to true or false",
    "PQLBOT_SEGMENT_WEBHOOK_SECRET": "set it to the shared secret of your Segment Webhooks destination",
    "PQLBOT_MIXPANEL_GROUP_KEY": "set it to the Mixpanel group key that names accounts, e.g. company_id",
    "PQLBOT_POSTHOG_GROUP_TYPE": "set it to the PostHog group type that names accounts, e.g. company",
}

_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_WRITE_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True, populate_by_name=False
    )

    database_url: str = Field("sqlite:///pqlbot.db", alias="DATABASE_URL")
    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field(DEFAULT_SLACK_API_URL, alias="SLACK_API_URL")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    write_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, alias="PQLBOT_WRITE_KEYS")
    alert_channel: str | None = Field(None, alias="PQLBOT_ALERT_CHANNEL")
    admins: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PQLBOT_ADMINS")
    model_path: Path | None = Field(None, alias="PQLBOT_MODEL")
    timezone: str = Field("UTC", alias="PQLBOT_TIMEZONE")
    claim_reminder_hours: int = Field(24, ge=1, le=720, alias="PQLBOT_CLAIM_REMINDER_HOURS")
    reevaluate_minutes: int = Field(60, ge=5, le=1440, alias="PQLBOT_REEVALUATE_MINUTES")
    slack_admins_are_admins: bool = Field(False, alias="PQLBOT_SLACK_ADMINS_ARE_ADMINS")
    segment_webhook_secret: SecretStr | None = Field(None, alias="PQLBOT_SEGMENT_WEBHOOK_SECRET")
    mixpanel_group_key: str = Field("company_id", min_length=1, max_length=255, alias="PQLBOT_MIXPANEL_GROUP_KEY")
    posthog_group_type: str = Field("company", min_length=1, max_length=255, alias="PQLBOT_POSTHOG_GROUP_TYPE")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            return normalise_url(value).render_as_string(hide_password=False)
        except DatabaseURLError as exc:
            raise ValueError(str(exc)) from None

    @field_validator(
        "slack_bot_token", "slack_signing_secret", "slack_app_token", "segment_webhook_secret", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip().startswith("xoxb-"):
            raise ValueError("is not a bot token (it must start with xoxb-)")
        return SecretStr(value.get_secret_value().strip()) if value else None

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip().startswith("xapp-"):
            raise ValueError("is not an app-level token (it must start with xapp-)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        value = value.strip() or DEFAULT_SLACK_API_URL
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("is not an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("write_keys", mode="before")
    @classmethod
    def _write_keys(cls, value: Any) -> Any:
        keys = _split(value)
        for key in keys or []:
            if not _WRITE_KEY.match(str(key)):
                raise ValueError("holds a key with spaces or unprintable characters")
        return keys

    @field_validator("admins", mode="before")
    @classmethod
    def _admins(cls, value: Any) -> Any:
        ids = _split(value)
        for uid in ids or []:
            if not _SLACK_USER.match(uid):
                raise ValueError(f"holds {uid[:40]!r}, which is not a Slack user ID (like U012AB3CD)")
        return ids

    @field_validator("alert_channel", mode="before")
    @classmethod
    def _channel(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not _CHANNEL.match(value):
                raise ValueError(f"is {value[:40]!r}, which is not a channel ID (like C0123ABCD)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"is {value[:40]!r}, which is not an IANA time zone") from None
        return value.strip()

    @field_validator("model_path")
    @classmethod
    def _model_path(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"names {str(value)[:200]!r}, which is not a readable file")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def write_key_values(self) -> list[str]:
        return [k.get_secret_value() for k in self.write_keys]

    def require_for_serve(self) -> None:
        """`serve` talks to Slack: its credentials must be set."""
        needed = [("SLACK_BOT_TOKEN", self.slack_bot_token)]
        if self.slack_app_token is None:  # Socket Mode requests are not signed
            needed.append(("SLACK_SIGNING_SECRET", self.slack_signing_secret))
        for name, value in needed:
            if value is None:
                raise ConfigError(f"{name} is not set: {HINTS[name]}")


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Build the settings, turning the first problem into a one-line ConfigError."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except UnicodeDecodeError:
        raise ConfigError(f"{env_file} is not UTF-8 text: save it as UTF-8 (or remove it)") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("int_parsing", "greater_than_equal", "less_than_equal", "bool_parsing"):
            reason = f"is {str(err.get('input'))[:40]!r}, which is not valid"
        hint = HINTS.get(name, "check its value")
        raise ConfigError(f"{name} {reason}: {hint}") from None
