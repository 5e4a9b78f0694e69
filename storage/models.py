"""Scoring-model versions: the highest version is live; every change is a new version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from scoring.model import Model, model_from_dict, model_to_dict
from storage.tables import ModelVersion, pk


@dataclass(frozen=True, slots=True)
class LiveModel:
    version: int
    model: Model
    created_by: str
    created_at: datetime
    source: str


def live_version(*, session: Session) -> int | None:
    return session.scalar(select(func.max(col(ModelVersion.id))))


def live_model(*, session: Session) -> LiveModel | None:
    row = session.scalars(select(ModelVersion).order_by(col(ModelVersion.id).desc()).limit(1)).first()
    if row is None:
        return None
    return LiveModel(
        version=pk(row),
        model=model_from_dict(row.body, stored=True),
        created_by=row.created_by,  # type: ignore[arg-type]
        created_at=row.created_at,
        source=row.source,
    )


class ModelChanged(Exception):
    """Someone else saved a model version first; read the live model again and retry."""


def save_model(
    *,
    session: Session,
    model: Model,
    created_by: str,
    source: str,
    summary: str,
    now: datetime,
    base_version: int | None,
) -> int:
    """Save `model` as the version after `base_version` (the one the change was made to).

    Versions are numbered explicitly, so two concurrent changes to the same version cannot both
    win: the second fails with ModelChanged instead of silently undoing the first.
    """
    version = (base_version or 0) + 1
    if (live_version(session=session) or 0) != (base_version or 0):
        raise ModelChanged()
    row = ModelVersion(
        id=version,
        created_at=now,
        created_by=created_by[:64],
        source=source[:16],
        summary=summary[:1000],
        body=model_to_dict(model),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise ModelChanged() from None
    return version


def history(*, session: Session, limit: int) -> list[ModelVersion]:
    """The most recent versions, newest first."""
    return list(session.scalars(select(ModelVersion).order_by(col(ModelVersion.id).desc()).limit(limit)))


def version(*, session: Session, version: int) -> ModelVersion | None:
    return session.get(ModelVersion, version)
