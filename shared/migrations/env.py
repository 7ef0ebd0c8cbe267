"""Alembic environment: the URL comes from the Config (``shared.db.alembic_config``) or from Settings."""

from alembic import context

from shared.db import Base, create_db_engine
from shared.models import TaskRunHistory, TaskSchedule, TickInFlight  # noqa: F401  (registers the tables)
from shared.settings import Settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings.from_env().sqlalchemy_url


def run_migrations() -> None:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables when a migration needs to.
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=engine.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
