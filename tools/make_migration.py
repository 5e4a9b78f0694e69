"""Developer tool: autogenerate an Alembic revision from the SQLModel tables.

    python tools/make_migration.py "what changed"

Runs the existing migrations on a scratch SQLite database, compares with storage/tables.py and
writes the difference as the next revision in storage/migrations/versions/. Read it before
committing: autogenerate cannot see renames.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.db import Database  # noqa: E402


def main() -> None:
    message = sys.argv[1] if len(sys.argv) > 1 else "schema change"
    versions = ROOT / "storage" / "migrations" / "versions"
    rev_id = f"{len(list(versions.glob('[0-9]*.py'))) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/scratch.db")
        db.upgrade()
        cfg = Config()
        cfg.set_main_option("script_location", str(ROOT / "storage" / "migrations"))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    for path in versions.glob(f"{rev_id}_*.py"):
        text = path.read_text()
        text = re.sub(r"(?<![\w.])Text\(\)", "sa.Text()", text)  # autogenerate forgets the prefix
        path.write_text(text)
        # House style, so the generated file passes the same lint as the rest.
        subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(path)], check=False)
        subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "--unsafe-fixes", "-q", str(path)], check=False)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
