"""pqlbot's exceptions. Each carries the one line a user should see."""

from __future__ import annotations


class PqlbotError(Exception):
    """Base of everything pqlbot raises on purpose; str() is the message for the user."""


class ConfigError(PqlbotError):
    """A setting is missing or malformed. `pqlbot` prints it and exits with status 2."""


class UserInputError(PqlbotError):
    """Something a person typed (a slash command, a CLI argument, a file) cannot be used."""


class NotAllowed(PqlbotError):
    """The person may not do this (an admin command from a non-admin)."""
