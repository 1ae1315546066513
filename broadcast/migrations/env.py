"""Alembic environment: runs on the connection handed over by broadcast.db, or on -x url=..."""

from alembic import context
from sqlalchemy import create_engine

from broadcast.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Run migrations online, on a given connection or a URL."""
    connection = config.attributes.get("connection")
    if connection is None:
        x_args = context.get_x_argument(as_dictionary=True)
        url = x_args.get("url") or config.get_main_option("sqlalchemy.url")
        engine = create_engine(url)
        with engine.begin() as conn:
            _configure_and_run(conn)
        engine.dispose()
    else:
        _configure_and_run(connection)


def _configure_and_run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
