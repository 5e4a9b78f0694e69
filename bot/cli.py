"""The `pqlbot` command."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.errors import ConfigError, PqlbotError, UserInputError
from bot.settings import HINTS, Settings, load_settings
from storage.db import DatabaseURLError

EXIT_CONFIG = 2


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("apscheduler", "slack_bolt", "slack_sdk", "aiohttp", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _db_error(exc: SQLAlchemyError) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return f"DATABASE_URL: cannot use the database ({reason}); check the URL and that the server is running"


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket now, so a taken port is one clear line, not a late traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"--host {host!r} is not an address this machine has; try 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = "it is already in use (is pqlbot already running?)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}; choose another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _check_slack_token(settings: Settings) -> None:
    """Ask Slack who we are: a wrong or revoked token stops start-up instead of failing later."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    assert settings.slack_bot_token is not None
    # slack_sdk logs each failed attempt at ERROR itself; the one warning below says it plainly.
    quiet = logging.getLogger("pqlbot.slack_check")
    quiet.setLevel(logging.CRITICAL)
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, timeout=10, logger=quiet
    )
    try:
        client.auth_test()
    except SlackApiError as exc:
        code = str(exc.response.get("error", "error")) if exc.response is not None else "error"
        if code in ("invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"):
            raise ConfigError(f"SLACK_BOT_TOKEN was refused by Slack ({code}): {HINTS['SLACK_BOT_TOKEN']}") from None
        logging.getLogger("pqlbot").warning("Slack answered auth.test with %s; starting anyway", code)
    except Exception as exc:  # Slack unreachable: start, deliveries retry until it answers
        logging.getLogger("pqlbot").warning(
            "could not reach Slack at %s (%s); alerts wait in the outbox until it answers",
            settings.slack_api_url,
            type(exc).__name__,
        )


def _check_app_token(settings: Settings) -> None:
    """Socket Mode: a wrong app-level token stops start-up in one line."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    if settings.slack_app_token is None:
        return
    client = WebClient(base_url=settings.slack_api_url, timeout=10)
    try:
        client.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
    except SlackApiError as exc:
        code = str(exc.response.get("error", "error")) if exc.response is not None else "error"
        raise ConfigError(
            f"SLACK_APP_TOKEN was refused by Slack ({code}): {HINTS['SLACK_APP_TOKEN']}; "
            "the token needs the connections:write scope and Socket Mode turned on for the app"
        ) from None
    except Exception as exc:
        raise ConfigError(f"could not reach Slack to open Socket Mode ({type(exc).__name__})") from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import Runtime

    settings = load_settings()
    settings.require_for_serve()
    _setup_logging(args.verbose)
    sock = _listen(args.host, args.port)
    runtime = Runtime(settings)
    runtime.prepare()
    _check_slack_token(settings)
    _check_app_token(settings)
    log = logging.getLogger("pqlbot")
    if not settings.write_keys:
        log.warning("PQLBOT_WRITE_KEYS is not set: every ingest request will be refused with 401")
    host, port = sock.getsockname()[:2]
    slack_way = "Slack over Socket Mode" if settings.slack_app_token else "Slack at /slack/events"
    log.info("pqlbot listening on http://%s:%s (%s, Segment at /v1/batch)", host, port, slack_way)
    config = uvicorn.Config(runtime.asgi(), log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    if args.database and Path(args.database).exists():
        raise UserInputError(f"{args.database} exists already; give the demo a new file to keep its database in")
    if args.database and not Path(args.database).resolve().parent.is_dir():
        raise UserInputError(f"--database: the folder {Path(args.database).resolve().parent} does not exist")
    return run_demo(verbose=args.verbose, database=args.database)


def cmd_rescore(args: argparse.Namespace) -> int:
    settings = load_settings()
    pipeline = _pipeline(settings)
    result = pipeline.rescore_all()
    print(
        f"re-scored {result.users} users and {result.accounts} accounts: {result.changed} changed, "
        f"{len(result.crossed)} crossed the threshold, {len(result.cooled)} fell below"
    )
    return 0


def _pipeline(settings: Settings) -> Any:
    from bot.app import _read_model
    from bot.pipeline import Pipeline
    from storage import Database

    _require_existing_database(settings)
    db = Database(settings.database_url)
    db.upgrade()
    # PQLBOT_MODEL is the first model of a new database, whichever command sets it up first.
    pipeline = Pipeline(db, initial_model=_read_model(settings))
    pipeline.ensure_model()
    return pipeline


def cmd_model_export(args: argparse.Namespace) -> int:
    from scoring.model import dump_model

    pipeline = _pipeline(load_settings())
    with pipeline.db.read() as s:
        live = pipeline.live_model(s)
    author = "".join(c if c.isprintable() else "?" for c in live.created_by)  # stays one comment line
    text = (
        f"# pqlbot scoring model v{live.version}, last changed by {author} ({live.source}) "
        f"on {live.created_at:%Y-%m-%d %H:%M} UTC\n# Edit it and load it with: pqlbot model import FILE\n"
        + dump_model(live.model)
    )
    try:
        if args.file in (None, "-"):
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            Path(args.file).write_text(text, encoding="utf-8")
            print(f"wrote model v{live.version} to {args.file}", file=sys.stderr)
    except OSError as exc:
        where = args.file if args.file not in (None, "-") else "standard output"
        raise ConfigError(f"cannot write {where}: {exc.strerror or type(exc).__name__}") from None
    return 0


def cmd_model_import(args: argparse.Namespace) -> int:
    import getpass

    from bot.model_admin import import_text
    from bot.services import Services
    from scoring.model import ModelError

    settings = load_settings()
    try:
        text = Path(args.file).read_text(encoding="utf-8") if args.file != "-" else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    pipeline = _pipeline(settings)
    services = Services(settings=settings, db=pipeline.db, pipeline=pipeline)
    try:
        changed = import_text(
            services,
            text=text,
            by=f"cli:{getpass.getuser()}"[:64],
            progress=_progress("recounting stored events for the changed signals"),
        )
    except ModelError as exc:
        print(f"pqlbot: {args.file} is not a valid model; nothing was changed:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if changed is None:
        print("the model in the file is already live; nothing changed")
        return 0
    _print_change(changed)
    return 0


def cmd_conversions_import(args: argparse.Namespace) -> int:
    from bot import conversions

    settings = load_settings()
    try:
        data = Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror or type(exc).__name__}") from None
    pipeline = _pipeline(settings)
    try:
        rows = conversions.parse_csv(data, zone=settings.zone, now=pipeline.clock())
    except PqlbotError as exc:
        print(f"pqlbot: {args.file}: {exc}", file=sys.stderr)
        return 1
    progress = _progress("recording conversions", at_least=5000)
    out = conversions.record(pipeline.db, rows, dry_run=args.dry_run, progress=progress)
    verb = "would record" if args.dry_run else "recorded"
    now_customers = f"{_n(len(out.accounts), 'account')} and {_n(len(out.users), 'user')}"
    print(f"read {_n(out.rows, 'conversion')} from {args.file}: {verb} {now_customers} as customers")
    median = conversions.median(out.pql_days)
    if out.pql_days and median is not None:
        were = "was a PQL" if len(out.pql_days) == 1 else "were PQLs"
        print(f"  {len(out.pql_days):,} of them {were}: median {median:.1f} days from the first alert to conversion")
    if out.already:
        was = "was" if out.already == 1 else "were"
        print(f"  {out.already:,} {was} already recorded (as early or earlier): unchanged")
    if out.missing:
        shown = ", ".join(f"{r.ident[:60]} (line {r.line})" for r in out.missing[:5])
        more = f" and {len(out.missing) - 5:,} more" if len(out.missing) > 5 else ""
        print(f"  {len(out.missing):,} not found in pqlbot, skipped: {shown}{more}")
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from bot import backfill

    settings = load_settings()
    path = Path(args.file)
    if not path.exists():
        raise ConfigError(f"{args.file} does not exist")
    if not path.is_file():
        raise ConfigError(f"{args.file} is not a file")
    try:
        with path.open("rb") as fh:
            compressed = fh.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror or type(exc).__name__}") from None
    if compressed:
        raise ConfigError(f"{args.file} is gzip-compressed: unpack it first (gunzip -k {args.file})")
    pipeline = _pipeline(settings)
    tty = sys.stderr.isatty()
    last = [-1]

    def progress(done: int, total: int, lines: int) -> None:
        pct = done * 100 // max(1, total)
        if last[0] >= 100:
            return  # the end is shown once
        if tty:
            sys.stderr.write(f"\rbackfill: {pct:3d}% ({_n(lines, 'line')})" + ("\n" if done >= total else ""))
            sys.stderr.flush()
        elif pct // 10 != last[0] // 10 or done >= total:
            sys.stderr.write(f"backfill: {pct}% ({_n(lines, 'line')})\n")
        last[0] = pct

    try:
        out = backfill.run(
            path=path,
            pipeline=pipeline,
            group_key=settings.mixpanel_group_key,
            restart=args.restart,
            alerts=args.alerts,
            progress=progress,
        )
    except KeyboardInterrupt:
        print(
            f"\nstopped; what was stored is kept. Run `pqlbot backfill {args.file}` again to go on from there.",
            file=sys.stderr,
        )
        return 130
    if out.already_done is not None:
        print(
            f"{args.file} was read to the end (line {out.lines:,}) on {out.already_done:%Y-%m-%d %H:%M} UTC: "
            "nothing new. Use --restart to read it again (stored events are not counted twice)."
        )
        return 0
    if out.resumed_at:
        print(f"resumed after line {out.resumed_at:,} (where the last run stopped; --restart reads from the start)")
    print(
        f"read {_n(out.lines, 'line')} of {args.file}: {_n(out.stored, 'event')} stored, "
        f"{out.duplicates:,} already stored, {out.bad_count:,} bad"
    )
    for line, why in out.bad:
        print(f"  line {line:,}: {why}")
    if out.bad_count > len(out.bad):
        print(f"  ...and {out.bad_count - len(out.bad):,} more bad lines")
    if out.new_pqls:
        where = (
            "announced in Slack" if args.alerts else "in /pql top; nothing was posted to Slack (--alerts posts them)"
        )
        print(f"{_n(out.new_pqls, 'new PQL')} from this history: {where}")
    return 1 if out.bad_count else 0


def cmd_report(args: argparse.Namespace) -> int:
    from storage import queries

    settings = load_settings()
    pipeline = _pipeline(settings)
    with pipeline.db.read() as s:
        rows = queries.conversion_by_month(session=s, months=args.months, now=pipeline.clock(), zone=settings.zone)
    print(f"PQL-to-customer conversion by monthly cohort (the month sales was first alerted; {settings.timezone})")
    print(f"{'month':<8}  {'PQLs':>6}  {'converted':>9}  {'rate':>5}  {'median days to convert':>22}")
    for r in rows:
        median = f"{r.median_days:.1f}" if r.median_days is not None else "-"
        rate = f"{r.rate:.0%}" if r.pqls else "-"
        print(f"{r.month:<8}  {r.pqls:>6}  {r.converted:>9}  {rate:>5}  {median:>22}")
    total, converted = sum(r.pqls for r in rows), sum(r.converted for r in rows)
    rate = f"{converted / total:.0%}" if total else "-"
    print(f"{'all':<8}  {total:>6}  {converted:>9}  {rate:>5}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import getpass

    from bot import calibrate
    from bot.model_admin import change_model
    from bot.services import Services
    from scoring import edit

    settings = load_settings()
    min_precision = calibrate.parse_precision(args.min_precision) if args.min_precision is not None else None
    pipeline = _pipeline(settings)
    now = pipeline.clock()
    since = None
    if args.since is not None:
        from bot.conversions import parse_when

        try:
            since = parse_when(args.since, settings.zone, now)
        except ValueError as exc:
            raise UserInputError(f"--since: {str(exc).replace('converted_at ', '')}") from None
    with pipeline.db.read() as s:
        live = pipeline.live_model(s)
    result = calibrate.replay(
        pipeline.db,
        live.model,
        level=args.level,
        since=since,
        now=now,
        min_precision=min_precision,
        progress=_progress("replaying stored events"),
    )
    if not result.events:
        print("no stored events to replay" + (f" since {args.since}" if since else "") + "; nothing to calibrate")
        return 1 if args.apply else 0
    span = f"{result.first:%Y-%m-%d} to {result.last:%Y-%m-%d}" if result.first and result.last else ""
    print(
        f"replayed {result.events:,} events of {result.population:,} {result.level} ({span}, "
        f"{result.weeks:.1f} weeks) with model v{live.version}"
    )
    if result.customers:
        base = result.customers / result.population
        print(f"{result.customers:,} of them became customers: a base conversion rate of {base:.1%}")
    print()
    for line in calibrate.table(result):
        print(line)
    print()
    best = result.suggestion
    if not result.customers:
        print(
            "no conversions recorded for these "
            f"{result.level} yet, so precision and recall cannot be measured: send `Subscription Started` events "
            "or run `pqlbot conversions import FILE.csv`"
        )
        return 1 if args.apply else 0
    if best is None:
        caught = [r for r in result.rows if r.converted]
        if min_precision is not None and caught:
            top = max(caught, key=lambda r: r.precision)
            print(
                f"no threshold reaches a precision of {min_precision:.0%}; "
                f"the best is {top.precision:.0%} at {top.threshold}"
            )
        else:
            print(
                f"none of the {_n(result.customers, 'customer')} reached any threshold before converting, "
                "so no threshold can be suggested from this history"
            )
        return 1 if args.apply else 0
    why = (
        f"the lowest with a precision of at least {min_precision:.0%}"
        if min_precision is not None
        else "the best balance of precision and recall (F1)"
    )
    print(
        f"suggested threshold: {best.threshold}, {why}: {best.pqls} PQLs, precision {best.precision:.0%}, "
        f"recall {best.recall:.0%}, {best.per_week:.1f} alerts a week"
    )
    if best.threshold == live.model.threshold:
        print("that is the live threshold already; nothing to change")
        return 0
    if not args.apply:
        print(f"run `pqlbot calibrate --apply` with the same options to make {best.threshold} the threshold")
        return 0
    if result.level == "users":
        print(
            "note: the threshold is one for users and accounts alike; this sets it from the users' history, "
            "so accounts are re-scored against it too"
        )
    services = Services(settings=settings, db=pipeline.db, pipeline=pipeline)
    threshold = best.threshold
    changed = change_model(
        services,
        edit_fn=lambda m: edit.with_threshold(m, threshold),
        by=f"cli:{getpass.getuser()}"[:64],
        source="calibrate",
        progress=_progress("recounting stored events"),
    )
    if changed is not None:
        _print_change(changed)
    return 0


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _months(text: str) -> int:
    try:
        if not text.strip().isascii() or not text.strip().isdigit():
            raise ValueError
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of months") from None
    if not 1 <= value <= 120:
        raise argparse.ArgumentTypeError(f"{value} is not a number of months from 1 to 120")
    return value


def _print_change(changed: Any) -> None:
    """What a model change did, for the terminal."""
    r = changed.result
    print(f"model v{changed.version} is live:")
    for line in changed.lines:
        print(f"  {line}")
    print(
        f"re-scored {r.users} users and {r.accounts} accounts: {len(r.crossed)} newly above the threshold, "
        f"{len(r.cooled)} fell below"
    )
    for item in sorted(r.crossed, key=lambda i: -int(i["score"]))[:5]:
        print(f"  up:   {item['name']} ({item['kind']}) now {item['score']}")
    for item in sorted(r.cooled, key=lambda i: int(i["score"]))[:5]:
        print(f"  down: {item['name']} ({item['kind']}) now {item['score']}")
    if r.announced:
        print("the new PQLs are announced in one message in the alert channel")


def _progress(what: str, at_least: int = 20_000) -> Callable[[int, int], None]:
    """Progress on standard error for long work (`at_least` items); short work stays quiet."""
    tty = sys.stderr.isatty()
    last = [-1]

    def show(done: int, total: int) -> None:
        if total < at_least:
            return
        pct = done * 100 // max(1, total)
        if tty:
            sys.stderr.write(f"\r{what}: {pct:3d}% ({done:,}/{total:,})" + ("\n" if done >= total else ""))
            sys.stderr.flush()
        elif pct // 10 != last[0] // 10 or done >= total:
            sys.stderr.write(f"{what}: {pct}% ({done:,}/{total:,})\n")
        last[0] = pct

    return show


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage import Database

    settings = load_settings()
    db = Database(settings.database_url)
    before = db.revision()
    db.upgrade()
    after = db.revision()
    if before is None:
        print(f"created the database schema (version {after})")
    elif before != after:
        print(f"migrated the database schema from version {before} to {after}")
    else:
        print(f"the database schema is already up to date (version {after})")
    return 0


def _require_existing_database(settings: Settings) -> None:
    """Maintenance commands work on a database that exists; they never create an empty one."""
    from storage import Database

    db = Database(settings.database_url)
    if db.is_sqlite and db.url.database and not Path(db.url.database).exists():
        raise ConfigError(
            f"DATABASE_URL names {db.url.database}, which does not exist: check the path, "
            "or create it with `pqlbot db upgrade` (or `pqlbot serve`)"
        )
    if db.revision() is None:
        raise ConfigError(
            "DATABASE_URL names a database pqlbot has not set up; run `pqlbot db upgrade` or `pqlbot serve`"
        )
    db.dispose()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pqlbot", description="Finds Product Qualified Leads and tells sales in Slack."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="command")
    serve = sub.add_parser("serve", help="run the HTTP server (Slack, ingest, health) and the scheduler")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=3000, help="port to listen on (default 3000; 0 picks a free one)")
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="replay a sample event stream and show the alerts sales would see")
    demo.add_argument("--database", metavar="FILE", help="keep the demo's SQLite database in FILE (a new file)")
    demo.set_defaults(func=cmd_demo)
    rescore = sub.add_parser("rescore", help="re-score every user and account from stored aggregates")
    rescore.set_defaults(func=cmd_rescore)
    model = sub.add_parser("model", help="export or import the scoring model (YAML)")
    model.set_defaults(func=lambda _args: _help(model))
    model_sub = model.add_subparsers(dest="model_command", metavar="action")
    export = model_sub.add_parser("export", help="write the live model as YAML (to standard output without FILE)")
    export.add_argument("file", nargs="?", metavar="FILE")
    export.set_defaults(func=cmd_model_export)
    imp = model_sub.add_parser("import", help="validate a model file and make it live (re-scores everything)")
    imp.add_argument("file", metavar="FILE", help="the YAML file, or - for standard input")
    imp.set_defaults(func=cmd_model_import)
    conv = sub.add_parser("conversions", help="record customers from billing or a CRM")
    conv.set_defaults(func=lambda _args: _help(conv))
    conv_sub = conv.add_subparsers(dest="conversions_command", metavar="action")
    conv_imp = conv_sub.add_parser(
        "import", help="record conversions from a CSV: user_id, email or account_id, and converted_at"
    )
    conv_imp.add_argument("file", metavar="FILE.csv", help="the CSV file, or - for standard input")
    conv_imp.add_argument("--dry-run", action="store_true", help="check and count, change nothing")
    conv_imp.set_defaults(func=cmd_conversions_import)
    bf = sub.add_parser(
        "backfill",
        help="store past events from a JSONL (Segment, RudderStack or Mixpanel export) or CSV file",
        description="Store past events from FILE: JSONL with one Segment message per line (or Mixpanel's "
        "export format), or CSV with a header user_id,event,timestamp[,account_id][,message_id][,properties...]. "
        "Bad lines are reported by number and skipped; an interrupted run resumes where it stopped; "
        "events already stored are not counted twice. Exit status 1 when some lines were bad.",
    )
    bf.add_argument("file", metavar="FILE")
    bf.add_argument("--restart", action="store_true", help="read from the start even if an earlier run got further")
    bf.add_argument(
        "--alerts", action="store_true", help="post alerts for leads this history makes PQLs (default: record quietly)"
    )
    bf.set_defaults(func=cmd_backfill)
    report = sub.add_parser("report", help="print PQL-to-customer conversion by monthly cohort")
    report.add_argument("--months", type=_months, default=6, help="how many months, the current one last (default 6)")
    report.set_defaults(func=cmd_report)
    cal = sub.add_parser("calibrate", help="replay history to choose the threshold from who became a customer")
    cal.add_argument("--since", metavar="DATE", help="replay events from this date (default: all stored history)")
    cal.add_argument(
        "--level", choices=("accounts", "users"), default="accounts", help="what a PQL is (default accounts)"
    )
    cal.add_argument(
        "--min-precision",
        metavar="P",
        help="suggest the lowest threshold whose PQLs convert at least this often (0.3 or 30%%)",
    )
    cal.add_argument("--apply", action="store_true", help="make the suggested threshold live (an audited model change)")
    cal.set_defaults(func=cmd_calibrate)
    db = sub.add_parser("db", help="database maintenance")
    db.set_defaults(func=lambda _args: _help(db))
    db_sub = db.add_subparsers(dest="db_command", metavar="action")
    upgrade = db_sub.add_parser("upgrade", help="create or migrate the schema to the newest version")
    upgrade.set_defaults(func=cmd_db_upgrade)
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        return _help(parser)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`pqlbot demo | head`): stop quietly, as other commands do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except DatabaseURLError as exc:
        print(f"pqlbot: DATABASE_URL {exc}: {HINTS['DATABASE_URL']}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"pqlbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PqlbotError as exc:
        print(f"pqlbot: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"pqlbot: {_db_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
