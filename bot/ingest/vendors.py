"""Mixpanel's and PostHog's wire formats, translated into Segment messages.

Each vendor's records become the Segment message that means the same thing (a track, page,
identify, group or alias call), which then goes through exactly the validation and storage of
the Segment routes (bot.ingest.segment). Nothing here touches storage.
"""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from bot.ingest import clean
from bot.ingest.segment import MAX_BATCH_MESSAGES, BadRequest

# An anonymous id no person ever uses: a group profile update carries no user, and a group call
# sent under an unused anonymous id updates the account without adding a member.
NO_USER = "pqlbot:group-profile"


@dataclass
class Translated:
    """The Segment messages a request means, and the write keys it presented."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    unkeyed: int = 0  # records that carried no token of their own
    ignored: int = 0
    origin: list[int] = field(default_factory=list)  # the record each message came from
    once: set[int] = field(default_factory=set)  # messages whose traits only fill gaps ($set_once)

    def token(self, value: Any) -> None:
        if isinstance(value, str) and value:
            self.keys.add(value)
        else:
            self.unkeyed += 1

    def set_once(self, message: dict[str, Any]) -> None:
        self.once.add(len(self.messages))
        self.messages.append(message)

    def came_from(self, index: int) -> None:
        self.origin.extend([index] * (len(self.messages) - len(self.origin)))


def _unix_time(value: Any, where: str) -> str | None:
    """Mixpanel's `time`: seconds or milliseconds since 1970 (a number or a numeric string)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{where}: time must be a Unix time in seconds or milliseconds")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadRequest(f"{where}: time must be a Unix time in seconds or milliseconds") from None
    seconds = value / 1000 if value > 1e11 else value  # 1e11 s is the year 5138; ms are bigger
    try:
        if not seconds >= 0:  # also NaN
            raise ValueError
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"{where}: time {str(value)[:30]} is not a Unix time") from None


def _dedupe_id(vendor: str, value: Any) -> str | None:
    """The vendor's de-duplication id as a messageId. A placeholder ("undefined", "null") is no
    id at all: the event is stored, just not de-duplicated (as on the Segment routes), rather
    than every such event after the first being dropped. A long id is hashed whole, never cut,
    so two ids that differ only past the cut stay two events."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    raw = str(value).strip()
    if not raw or raw.casefold() in clean.JUNK_IDS:
        return None
    if len(raw) > 200 or clean.has_control(raw):
        return f"{vendor}:sha256:{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()}"
    return f"{vendor}:{raw}"


def _person(distinct_id: Any, where: str) -> dict[str, Any]:
    """Mixpanel's and PostHog's distinct_id as Segment's userId, or anonymousId for a device id."""
    if distinct_id is None or distinct_id == "":
        raise BadRequest(f"{where}: distinct_id is missing")
    if isinstance(distinct_id, (int, float)) and not isinstance(distinct_id, bool):
        distinct_id = str(distinct_id)
    if isinstance(distinct_id, str) and distinct_id.startswith("$device:"):
        return {"anonymousId": distinct_id.removeprefix("$device:")}
    return {"userId": distinct_id}


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def _first(value: Any) -> Any:
    """Mixpanel lets a user belong to several groups of one key (a list): the first is theirs."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


MIXPANEL_TRAITS = {
    "$email": "email",
    "$name": "name",
    "$first_name": "firstName",
    "$last_name": "lastName",
    "$phone": "phone",
    "$created": "createdAt",
}
MIXPANEL_INTERNAL = {"token", "distinct_id", "time", "$insert_id", "mp_lib", "$lib_version", "$device_id", "$user_id"}


def mixpanel_records(body: bytes, content_type: str) -> tuple[list[Any], str | None]:
    """The records of a Mixpanel request (form `data=` holding JSON or base64 JSON, or a JSON
    body) and the `api_key` form field if one came."""
    if "json" in content_type:
        text, api_key = body.decode("utf-8", "strict"), None
    else:
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except ValueError:
            raise BadRequest("body must be a form with a `data` field") from None
        data = form.get("data")
        if not data:
            raise BadRequest("body must have a `data` field holding the JSON records")
        text = data[0]
        api_keys = form.get("api_key")
        api_key = api_keys[0] if api_keys else None
        if not text.lstrip().startswith(("{", "[")):
            try:  # older clients send the JSON base64-encoded
                text = base64.b64decode(text.strip(), validate=False).decode("utf-8")
            except ValueError:  # bad base64, bytes that are not UTF-8, non-ASCII text
                raise BadRequest("`data` is neither JSON nor base64-encoded JSON") from None
    # orjson, as on every other route: it refuses what could not be stored or rendered later
    # (NaN and Infinity, lone surrogates, integers over 64 bits, nesting over 1,024 levels).
    try:
        payload = orjson.loads(text.encode("utf-8", "surrogatepass"))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"`data` is not valid JSON ({str(exc).split(':')[0]})") from None
    records = payload if isinstance(payload, list) else [payload]
    if len(records) > MAX_BATCH_MESSAGES:
        raise BadRequest(f"request has {len(records)} records; at most {MAX_BATCH_MESSAGES}", 413)
    return records, api_key


def mixpanel(route: str, records: list[Any], *, group_key: str) -> Translated:
    """Mixpanel `track`/`import` events, `engage` (people) and `groups` updates → Segment."""
    out = Translated()
    for index, record in enumerate(records):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise BadRequest(f"{where} must be a JSON object")
        if route in ("track", "import"):
            _mixpanel_event(record, where, group_key, out)
        elif route == "engage":
            _mixpanel_person(record, where, group_key, out)
        else:
            _mixpanel_group(record, where, group_key, out)
        out.came_from(index)
    return out


def _mixpanel_event(record: dict[str, Any], where: str, group_key: str, out: Translated) -> None:
    props = _object(record.get("properties"), f"{where}: properties")
    out.token(props.get("token"))
    name = record.get("event")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{where}: event must be a non-empty string")
    # Simplified ID merge sends $user_id and $device_id; original ID merge sends a distinct_id
    # that is "$device:<id>" until the person is identified.
    if isinstance(props.get("$user_id"), (str, int)) and props.get("$user_id") != "":
        who: dict[str, Any] = {"userId": props["$user_id"]}
        if isinstance(props.get("$device_id"), str) and props["$device_id"]:
            who["anonymousId"] = props["$device_id"]
    else:
        who = _person(props.get("distinct_id"), where)
    base: dict[str, Any] = {**who, "timestamp": _unix_time(props.get("time"), where)}
    insert_id = _dedupe_id("mixpanel", props.get("$insert_id"))
    if insert_id:
        base["messageId"] = insert_id
    group = _first(props.get(group_key))
    if isinstance(group, (str, int)) and not isinstance(group, bool):
        base["context"] = {"groupId": group}
    kept = {k: v for k, v in props.items() if k not in MIXPANEL_INTERNAL}
    if name in ("$create_alias", "$identify"):
        # alias(alias_id, original): events under alias_id are the original person's.
        # $identify (the JS library): the anonymous id becomes the identified person.
        if name == "$create_alias":
            new, old = props.get("distinct_id"), props.get("alias")
        else:
            new, old = props.get("$identified_id"), props.get("$anon_distinct_id")
        if new is None or old is None:
            raise BadRequest(f"{where}: {name} needs both ids")
        out.messages.append({"type": "alias", "userId": new, "previousId": old, **_only_meta(base)})
        return
    if name == "$mp_web_page_view":
        url = kept.get("current_url_path") or _url_path(kept.get("$current_url"))
        out.messages.append(
            {
                **base,
                "type": "page",
                "name": kept.get("current_page_title"),
                "properties": {**kept, "path": url or None},
            }
        )
        return
    out.messages.append({**base, "type": "track", "event": name, "properties": kept})


def _url_path(url: Any) -> str | None:
    """The path of a page's URL; a URL that cannot be read has none (the view is still kept)."""
    if not isinstance(url, str) or not url:
        return None
    try:
        return urllib.parse.urlsplit(url[:4096]).path or None
    except ValueError:  # "http://[x": an unclosed IPv6 host
        return None


def _only_meta(base: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k in ("timestamp", "messageId")}


def _mixpanel_person(record: dict[str, Any], where: str, group_key: str, out: Translated) -> None:
    out.token(record.get("$token"))
    who = _person(record.get("$distinct_id"), where)
    at = _unix_time(record.get("$time"), where)
    sets = dict(_object(record.get("$set"), f"{where}: $set"))
    once = dict(_object(record.get("$set_once"), f"{where}: $set_once"))
    if not sets and not once:
        out.ignored += 1  # $add, $append, $unset, $delete: nothing pqlbot scores
        return
    group = _first(sets.pop(group_key, None))
    first_group = _first(once.pop(group_key, None))
    traits = {MIXPANEL_TRAITS.get(k, k): v for k, v in sets.items()}
    if traits:
        out.messages.append({"type": "identify", **who, "traits": traits, "timestamp": at})
    if once:
        out.set_once(
            {
                "type": "identify",
                **who,
                "traits": {MIXPANEL_TRAITS.get(k, k): v for k, v in once.items()},
                "timestamp": at,
            }
        )
    if group is None and first_group is not None:
        group = first_group  # a membership is never "set once": it only ever moves by $set
    if isinstance(group, (str, int)) and not isinstance(group, bool):
        out.messages.append({"type": "group", **who, "groupId": group, "timestamp": at})


def _mixpanel_group(record: dict[str, Any], where: str, group_key: str, out: Translated) -> None:
    out.token(record.get("$token"))
    if record.get("$group_key") != group_key:
        out.ignored += 1  # another kind of group (a team, a project): not the account
        return
    group_id = record.get("$group_id")
    if group_id is None:
        raise BadRequest(f"{where}: $group_id is missing")
    at = _unix_time(record.get("$time"), where)
    sets = _object(record.get("$set"), f"{where}: $set")
    once = _object(record.get("$set_once"), f"{where}: $set_once")
    message = {"type": "group", "anonymousId": NO_USER, "groupId": group_id, "timestamp": at}
    if sets or not once:
        out.messages.append({**message, "traits": {MIXPANEL_TRAITS.get(k, k): v for k, v in sets.items()}})
    if once:
        out.set_once({**message, "traits": {MIXPANEL_TRAITS.get(k, k): v for k, v in once.items()}})


# --- PostHog ----------------------------------------------------------------------------------

POSTHOG_DROPPED = {
    "$feature_flag_called",
    "$exception",
    "$snapshot",
    "$web_vitals",
    "$opt_in",
    "$groups",
    "$plugin_running_duration",
}
POSTHOG_INTERNAL = {"$lib", "$lib_version", "$geoip_disable", "$groups", "$set", "$set_once", "token", "distinct_id"}


def posthog_body(body: bytes, compression: str, content_type: str, limit: int, inflate: Any) -> bytes:
    """The JSON of a PostHog request as posthog-js and the server clients send it: gzip named in
    the query (`?compression=gzip-js`) rather than a header, or a form whose `data` is base64."""
    compression = compression.strip().lower()
    if compression in ("gzip-js", "gzip") and body[:2] == b"\x1f\x8b":
        return inflate(body, limit)  # type: ignore[no-any-return]
    if compression == "lz64":
        raise BadRequest("lz64 compression is not supported: send gzip-js, base64 or plain JSON", 415)
    if "form" in content_type:
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
            data = (form.get("data") or [""])[0].strip()
            text = data if data.startswith(("{", "[")) else base64.b64decode(data, validate=False).decode("utf-8")
        except ValueError:
            raise BadRequest("`data` is neither JSON nor base64-encoded JSON") from None
        return text.encode("utf-8", "surrogatepass")
    return body


def posthog(payload: Any, *, group_type: str) -> Translated:
    """A PostHog /batch/ or /capture/ body (one event, or `batch` of them) → Segment messages."""
    if not isinstance(payload, dict) and not isinstance(payload, list):
        raise BadRequest("body must be a JSON object")
    out = Translated()
    if isinstance(payload, list):
        records, top = payload, {}
    elif "batch" in payload:
        records, top = payload["batch"], payload
        if not isinstance(records, list):
            raise BadRequest("`batch` must be an array of events")
    else:
        records, top = [payload], payload
    if len(records) > MAX_BATCH_MESSAGES:
        raise BadRequest(f"request has {len(records)} events; at most {MAX_BATCH_MESSAGES}", 413)
    for key in (top.get("api_key"), top.get("token")):
        if isinstance(key, str):
            out.keys.add(key)
    sent_at = top.get("sent_at")
    for index, record in enumerate(records):
        where = f"event {index}"
        if not isinstance(record, dict):
            raise BadRequest(f"{where} must be a JSON object")
        props = _object(record.get("properties"), f"{where}: properties")
        for key in (record.get("api_key"), props.get("token")):
            if isinstance(key, str) and record is not top:
                out.keys.add(key)
        _posthog_event(record, props, where, group_type, out)
        out.came_from(index)
    if isinstance(sent_at, str):
        for m in out.messages:
            m["sentAt"] = sent_at
    return out


def _posthog_event(record: dict[str, Any], props: dict[str, Any], where: str, group_type: str, out: Translated) -> None:
    name = record.get("event")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{where}: event must be a non-empty string")
    if name in POSTHOG_DROPPED or name.startswith("$ai_"):
        out.ignored += 1
        return
    distinct = record.get("distinct_id", props.get("distinct_id"))
    who = _person(distinct, where)
    if props.get("$process_person_profile") is False and "userId" in who:
        who = {"anonymousId": who["userId"]}  # a personless event: an anonymous visitor
    base: dict[str, Any] = {**who}
    if record.get("timestamp") is not None:
        base["timestamp"] = record["timestamp"]
    uid = _dedupe_id("posthog", record.get("uuid"))
    if uid:
        base["messageId"] = uid
    groups = _object(props.get("$groups"), f"{where}: properties.$groups")
    group = groups.get(group_type)
    if isinstance(group, (str, int)) and not isinstance(group, bool):
        base["context"] = {"groupId": group}
    kept = {k: v for k, v in props.items() if k not in POSTHOG_INTERNAL}
    sets = {**_object(record.get("$set"), f"{where}: $set"), **_object(props.get("$set"), f"{where}: properties.$set")}
    once = {
        **_object(record.get("$set_once"), f"{where}: $set_once"),
        **_object(props.get("$set_once"), f"{where}: properties.$set_once"),
    }
    if name == "$groupidentify":
        if props.get("$group_type") != group_type:
            out.ignored += 1  # another kind of group (a team, a project): not the account
            return
        traits = _object(props.get("$group_set"), f"{where}: properties.$group_set")
        out.messages.append(
            {
                "type": "group",
                "anonymousId": NO_USER,
                "groupId": props.get("$group_key"),
                "traits": traits,
                **_meta(base),
            }
        )
        return
    if name == "$create_alias":
        if props.get("alias") is None:
            raise BadRequest(f"{where}: properties.alias is missing")
        out.messages.append({"type": "alias", "userId": props["alias"], "previousId": distinct, **_meta(base)})
        return
    if name in ("$identify", "$set", "$set_once"):
        anon = props.get("$anon_distinct_id")
        if name == "$identify" and isinstance(anon, str) and anon and anon != distinct:
            out.messages.append(
                {
                    "type": "alias",
                    "userId": distinct,
                    "previousId": anon,
                    **_meta(base),
                    "messageId": _derived(base, "alias"),
                }
            )
        if sets or ("context" in base and not once):
            out.messages.append({"type": "identify", **base, "traits": sets})
        if once:
            out.set_once({"type": "identify", **base, "traits": once, "messageId": _derived(base, "once")})
        return
    if name == "$pageview":
        url = props.get("$pathname") or _url_path(props.get("$current_url"))
        out.messages.append(
            {**base, "type": "page", "name": props.get("title"), "properties": {**kept, "path": url or None}}
        )
        return
    if name == "$screen":
        out.messages.append({**base, "type": "screen", "name": props.get("$screen_name"), "properties": kept})
        return
    out.messages.append({**base, "type": "track", "event": name, "properties": kept})
    if sets:
        out.messages.append(
            {"type": "identify", **who, "traits": sets, **_meta(base), "messageId": _derived(base, "set")}
        )
    if once:
        out.set_once({"type": "identify", **who, "traits": once, **_meta(base), "messageId": _derived(base, "once")})


def _derived(base: dict[str, Any], what: str) -> str | None:
    """A second message made from one event keeps a stable id of its own (so a retry of the
    event is recognised for both)."""
    mid = base.get("messageId")
    return f"{mid}:{what}" if mid else None


def _meta(base: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k in ("timestamp", "messageId", "context")}


def vendor_error(message: str, vendor: str, origin: list[int]) -> str:
    """A Segment-worded validation problem, in the vendor's own words: which record or event,
    and its field names."""
    unit = "record" if vendor == "mixpanel" else "event"
    match = re.match(r"message (\d+)\b", message)
    if match and int(match[1]) < len(origin):
        message = f"{unit} {origin[int(match[1])]}{message[match.end() :]}"
    names = {"userId": "distinct_id", "anonymousId": "distinct_id", "previousId": "alias"}
    if vendor == "mixpanel":
        names["timestamp"] = "time"
    for old, new in names.items():
        message = message.replace(old, new)
    return message
