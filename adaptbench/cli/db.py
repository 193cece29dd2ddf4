"""`adaptbench db ...`: look after the database itself (upgrading its schema)."""

from __future__ import annotations

import sys

import typer

from adaptbench.cli.common import DbOpt, app

db_app = typer.Typer(help="Look after the results database.", rich_markup_mode=None, no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_cmd(db: DbOpt = None) -> None:
    """Upgrade a database written by an older adaptbench to this one's schema, in one transaction.

    Stop its workers first. On PostgreSQL, back the database up first (pg_dump).
    """
    from adaptbench import store

    done = store.upgrade(db)
    if not done.steps:
        print(f"database {done.url} already has schema version {done.to_version}; nothing to do",
              file=sys.stderr)
        return
    print(f"upgraded {done.url} from schema {done.from_version} to {done.to_version}: "
          f"{'; '.join(done.steps)}", file=sys.stderr)
