"""The `pqlbot` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from bot.errors import ConfigError, PqlbotError
from bot.settings import load_settings

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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import Runtime

    settings = load_settings()
    settings.require_for_serve()
    _setup_logging(args.verbose)
    runtime = Runtime(settings)
    runtime.prepare()
    log = logging.getLogger("pqlbot")
    if not settings.write_keys:
        log.warning("PQLBOT_WRITE_KEYS is not set: every ingest request will be refused with 401")
    log.info("pqlbot listening on http://%s:%s (Slack at /slack/events, Segment at /v1/batch)", args.host, args.port)
    uvicorn.run(runtime.asgi(), host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(verbose=args.verbose)


def cmd_rescore(args: argparse.Namespace) -> int:
    from bot.app import Runtime

    settings = load_settings()
    runtime = Runtime(settings, run_scheduler=False)
    runtime.prepare()
    result = runtime.pipeline.rescore_all()
    print(
        f"re-scored {result.users} users and {result.accounts} accounts: {result.changed} changed, "
        f"{len(result.crossed)} crossed the threshold, {len(result.cooled)} fell below"
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage import Database

    settings = load_settings()
    Database(settings.database_url).upgrade()
    print("database schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pqlbot", description="Finds Product Qualified Leads and tells sales in Slack."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="command")
    serve = sub.add_parser("serve", help="run the HTTP server (Slack, ingest, health) and the scheduler")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="port to listen on (default 3000)")
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="replay a sample event stream and show the alerts sales would see")
    demo.set_defaults(func=cmd_demo)
    rescore = sub.add_parser("rescore", help="re-score every user and account from stored aggregates")
    rescore.set_defaults(func=cmd_rescore)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="action")
    upgrade = db_sub.add_parser("upgrade", help="create or migrate the schema to the newest version")
    upgrade.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.func(args))
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
