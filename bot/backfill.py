"""`pqlbot backfill FILE`: bring a team's history in from a file.

JSONL holds one Segment message per line (a Segment or RudderStack export, or Mixpanel's raw
export: `{"event": ..., "properties": {"distinct_id": ..., "time": ...}}`). CSV has a header
and one track event per line: `user_id,event,timestamp[,account_id][,message_id][,any property...]`.
Every line goes through the validation of the HTTP routes; a bad line is reported by number
and skipped, and the good ones are stored. Lines without a message id get one derived from
their content, so reading a file twice (or a file that overlaps live traffic with the same
message ids) never counts an event twice. The position is saved after every committed chunk:
an interrupted backfill resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import func, select

from bot.errors import PqlbotError
from bot.ingest import clean, segment, vendors
from bot.ingest.segment import BadRequest
from scoring import Event
from storage.tables import BACKFILL, LEADS

CHUNK = 1000
MAX_LINE = segment.MAX_MESSAGE_BYTES * 2  # a line is one message, with room for JSON escapes
KEY_BYTES = 64 * 1024
CSV_REQUIRED = ("user_id", "event", "timestamp")
CSV_KNOWN = {*CSV_REQUIRED, "account_id", "message_id"}

Progress = Callable[[int, int, int], None]  # bytes read, file size, lines read


@dataclass
class Outcome:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    bad_count: int = 0
    resumed_at: int = 0  # the line a resumed backfill started after (0: from the start)
    already_done: datetime | None = None
    new_pqls: int = 0


def detect_format(path: Path, first: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if first.lstrip().startswith(b"{") else "csv"


def file_key(path: Path, head: bytes) -> str:
    return hashlib.sha256(str(path.resolve()).encode() + b"\0" + head).hexdigest()


def _lines(fh: BinaryIO, start: int) -> Iterator[tuple[int, bytes | None]]:
    """(offset after the line, the line) from `start`; a line over MAX_LINE comes as None."""
    fh.seek(start)
    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                raw = fh.readline(1 << 20)
            yield fh.tell(), None
        else:
            yield fh.tell(), raw


class _Ids:
    """Ids for lines that carry none, derived from their content, so reading a file twice (or two
    exports that overlap) stores each event once. A line repeated within one file (five uses of
    a feature on a day, in an export that only gives dates) is five events: its n-th occurrence
    gets an id of its own."""

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}

    def count(self, line: bytes) -> str:
        digest = hashlib.sha1(line.strip(), usedforsecurity=False).digest()
        n = self.seen.get(digest, 0)
        self.seen[digest] = n + 1
        return "backfill:" + digest.hex() + (f"#{n + 1}" if n else "")


def _jsonl_message(line: bytes, group_key: str, derived_id: str) -> dict[str, Any]:
    try:  # orjson, as on the HTTP routes: no NaN, Infinity or lone surrogates get in
        msg = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"not valid JSON ({str(exc).split(':')[0]})") from None
    if not isinstance(msg, dict):
        raise BadRequest("must be a JSON object")
    if "type" not in msg and isinstance(msg.get("properties"), dict) and "distinct_id" in msg["properties"]:
        translated = vendors.mixpanel("track", [msg], group_key=group_key)  # a Mixpanel export line
        if not translated.messages:
            raise BadRequest("a Mixpanel event pqlbot does not use")
        msg = translated.messages[0]
        if msg.get("timestamp") is None:
            raise BadRequest("properties.time is missing (a backfill needs each event's own time)")
    if msg.get("timestamp") in (None, "") and msg.get("originalTimestamp") in (None, ""):
        raise BadRequest("timestamp is missing (a backfill needs each event's own time)")
    msg.setdefault("messageId", derived_id)
    return msg


class _Csv:
    def __init__(self, header: bytes):
        if not header.strip():
            raise PqlbotError("the file is empty (a CSV starts with a header: user_id,event,timestamp,...)")
        try:
            names = next(csv.reader([header.decode("utf-8-sig")]))
        except (UnicodeDecodeError, StopIteration, csv.Error):
            raise PqlbotError("the first line must be a CSV header (user_id,event,timestamp,...)") from None
        self.names = [n.strip().lower() for n in names]
        missing = [n for n in CSV_REQUIRED if n not in self.names]
        if missing:
            raise PqlbotError(
                f"the CSV header lacks {', '.join(missing)}: it must start user_id,event,timestamp "
                "(then account_id, message_id and any properties)"
            )
        if len(set(self.names)) != len(self.names):
            raise PqlbotError("the CSV header names a column twice")

    def message(self, line: bytes, derived_id: str) -> dict[str, Any]:
        try:
            (row,) = csv.reader([line.decode("utf-8")])
        except UnicodeDecodeError:
            raise BadRequest("not UTF-8") from None
        except (ValueError, csv.Error):
            raise BadRequest("not one CSV row (quoted line breaks are not supported)") from None
        if len(row) != len(self.names):  # (also a line break inside quotes, read as two rows)
            raise BadRequest(f"has {len(row)} fields; the header has {len(self.names)}")
        values = dict(zip(self.names, (v.strip() for v in row), strict=True))
        stamp = values["timestamp"]
        if not stamp:
            raise BadRequest("timestamp is missing (a backfill needs each event's own time)")
        if stamp.replace(".", "", 1).isdigit():
            stamp = vendors._unix_time(stamp, "timestamp") or ""
        msg: dict[str, Any] = {
            "type": "track",
            "userId": values["user_id"] or None,
            "event": values["event"],
            "timestamp": stamp,
            "properties": {k: v for k, v in values.items() if k not in CSV_KNOWN and v != ""},
            "messageId": values.get("message_id") or derived_id,
        }
        if values.get("account_id"):
            msg["context"] = {"groupId": values["account_id"]}
        return msg


def _event(msg: dict[str, Any], now: datetime) -> Event:
    """Validate as the HTTP routes do. History has its own receive time: a Segment export's
    receivedAt when it has one; without one, the timestamp is taken as it is (a skew correction
    against today's clock would move old events to today)."""
    received = now
    raw_received = msg.get("receivedAt")
    if raw_received is not None:
        try:
            received = clean.timestamp(raw_received, "receivedAt") or now
        except clean.FieldError as exc:
            raise BadRequest(str(exc)) from None
    else:
        msg = {k: v for k, v in msg.items() if k != "sentAt"}
    received = min(received, now)
    for key, value in msg.items():
        if clean.depth(value) > clean.MAX_DEPTH:
            raise BadRequest(f"{str(key)[:40]!r} is nested more than {clean.MAX_DEPTH} levels deep")
    try:
        if len(orjson.dumps(msg, default=str)) > segment.MAX_MESSAGE_BYTES:
            raise BadRequest("over the 32 KB limit of a single message")
        event = segment.parse_message(msg, None, received, None, {}, "backfill")
    except (clean.FieldError, TypeError) as exc:
        raise BadRequest(str(exc)) from None
    if "future_timestamp" in event.flags:
        # Live traffic from a fast clock is clamped to its receive time; history dated in the
        # future is a broken export, and storing it as "now" would make a dormant user active.
        raise BadRequest(f"timestamp {str(msg.get('timestamp'))[:40]} is in the future")
    return event


def run(
    *,
    path: Path,
    pipeline: Any,
    group_key: str,
    restart: bool = False,
    alerts: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    out = Outcome()
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise PqlbotError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(KEY_BYTES)
        fmt = detect_format(path, head)
        key = file_key(path, head)
        db = pipeline.db
        with db.read() as s:
            saved = s.execute(select(BACKFILL).where(BACKFILL.c.file_key == key)).first()
            pqls_before = int(s.scalar(select(func.count()).select_from(LEADS).where(LEADS.c.qualified)) or 0)
        start, line_no = 0, 0
        parser: _Csv | None = None
        if fmt == "csv":
            fh.seek(0)
            header = fh.readline(MAX_LINE)
            parser = _Csv(header)
            start, line_no = len(header), 1
        done_to = 0  # what an earlier, interrupted run stored: read again only to count repeats
        if saved is not None and not restart and saved.byte_offset <= size:
            if saved.byte_offset == size and saved.finished_at is not None:
                out.already_done = saved.finished_at
                out.lines = saved.line
                return out
            if saved.byte_offset > start:
                done_to = saved.byte_offset
        now = pipeline.clock()
        ingest = pipeline._ingest if alerts else pipeline.ingest_quietly
        chunk: list[Event] = []
        ids = _Ids()

        def commit(offset: int, finished: bool) -> None:
            if chunk:
                rec = ingest(chunk)
                out.stored += rec.stored
                out.duplicates += rec.duplicates
                chunk.clear()
            _save(db, key, path, offset, line_no, out, pipeline.clock(), finished)
            if progress is not None:
                progress(offset, size, line_no - (1 if parser is not None else 0))  # the header is no line of data

        offset, end, finished = start, start, True
        for offset, raw in _lines(fh, start):
            line_no += 1
            if offset <= done_to:
                if raw is not None and raw.strip():
                    ids.count(raw)
                out.resumed_at = line_no
                end = offset
                continue
            out.lines += 1
            if raw is None:
                _bad(out, line_no, f"over the {MAX_LINE // 1024} KB line limit")
                end = offset
                continue
            if not raw.strip():
                end = offset
                continue
            try:
                derived = ids.count(raw)
                msg = parser.message(raw, derived) if parser is not None else _jsonl_message(raw, group_key, derived)
                chunk.append(_event(msg, now))
            except BadRequest as exc:
                if not raw.endswith(b"\n"):
                    # The last line has no end: a file still being written. Keep the position
                    # before it, so a run once the file is complete reads the whole line.
                    _bad(out, line_no, f"{exc}; the line has no end yet (run again once the file is complete)")
                    finished = False
                    break
                _bad(out, line_no, str(exc), csv_names=parser is not None)
            end = offset
            if len(chunk) >= CHUNK:
                commit(end, finished=False)
        if not finished:
            line_no -= 1  # the unfinished line is not behind the saved position
        commit(end, finished=finished)
        with db.read() as s:
            pqls_after = int(s.scalar(select(func.count()).select_from(LEADS).where(LEADS.c.qualified)) or 0)
        out.new_pqls = max(0, pqls_after - pqls_before)
    return out


def _bad(out: Outcome, line: int, why: str, csv_names: bool = False) -> None:
    out.bad_count += 1
    if len(out.bad) < 20:
        why = why.removeprefix("message: ")
        if csv_names:
            why = why.replace("a userId or an anonymousId", "a user_id").replace("event must", "event must")
        out.bad.append((line, why[:200]))


def _save(db: Any, key: str, path: Path, offset: int, line: int, out: Outcome, now: datetime, finished: bool) -> None:
    from storage._sql import insert

    values = {
        "path": str(path.resolve())[:1000],
        "byte_offset": offset,
        "line": line,
        "stored": out.stored,
        "duplicates": out.duplicates,
        "bad": out.bad_count,
        "updated_at": now,
        "finished_at": now if finished else None,
    }
    with db.write() as s:
        s.execute(
            insert(s, BACKFILL)
            .values(file_key=key, **values)
            .on_conflict_do_update(index_elements=["file_key"], set_=values)
        )
