"""Engine, sessions and migrations, for PostgreSQL (production) and SQLite (the embedded mode)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from psycopg.types.json import Jsonb
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Engine,
    Table,
    TextClause,
    create_engine,
    event,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    """The declarative base of every model."""

    pass


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Store an aware datetime in UTC (as naive UTC on SQLite); a naive one is refused: it would be a guess."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Read a stored naive UTC value back as an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


T = TypeVar("T")


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC. Storage and the wire never see another zone."""
    return datetime.now(UTC)


def create_db_engine(url: str, ping_on_checkout: bool = True) -> Engine:
    """An engine tuned for the dialect: SQLite gets a real write lock per transaction (see below).

    ``ping_on_checkout`` tests each pooled connection with a round trip before use, so that the first request
    after a database restart does not fail. The workers turn it off: the ping would double the round trips of
    starting a run. Their paths retry instead (Dramatiq redelivers a tick or a start, outcomes are retried, and
    publishes and system slots go through ``retrying_a_stale_connection``), and the first failure on a dead
    connection makes SQLAlchemy drop the whole stale pool.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=ping_on_checkout, pool_size=5, max_overflow=10)
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, open transactions, so that BEGIN IMMEDIATE below takes the write lock
        # up front: SQLite has no SELECT ... FOR UPDATE, and this is what serialises claims in embedded mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def retrying_a_stale_connection(work: Callable[[], T]) -> T:
    """Do ``work``, and once more if it failed on a pooled connection that died since its last use (a database
    restart or failover). The workers do not ping connections before use (see ``create_db_engine``), so the
    first use of each after a restart fails this way; SQLAlchemy has then dropped the whole stale pool."""
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


def is_postgresql(session: Session) -> bool:
    """Whether ``session`` talks to PostgreSQL (otherwise it is the embedded mode's SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def update_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    only_if: ColumnElement[bool] | None = None,
) -> list[int]:
    """Set each row's columns by its ``id``, where ``only_if`` holds; return the ids changed.

    On PostgreSQL one ``UPDATE ... FROM unnest(arrays)``: a batch in one statement and one round trip, whose
    text is built once per shape (pass ``only_if`` as a constant). On SQLite (the embedded mode, a handful of
    rows at a time) one statement per row.
    """
    if not rows:
        return []
    columns = [name for name in rows[0] if name != "id"]
    if not is_postgresql(session):
        changed = []
        for row in rows:
            statement = update(table).where(table.c.id == row["id"]).values({c: row[c] for c in columns})
            if only_if is not None:
                statement = statement.where(only_if)
            if session.execute(statement.returning(table.c.id)).first() is not None:
                changed.append(row["id"])
        return changed
    parameters = {name: [row[name] for row in rows] for name in ["id", *columns]}
    return list(session.scalars(_update_from_arrays(table, tuple(columns), only_if), parameters))


@cache
def _update_from_arrays(
    table: Table, columns: tuple[str, ...], only_if: ColumnElement[bool] | None
) -> TextClause:
    arrays = ", ".join(_array_parameter(table, name) for name in ("id", *columns))
    assignments = ", ".join(f"{name} = v.{name}" for name in columns)
    condition = ""
    if only_if is not None:
        compiled = only_if.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        condition = f" AND {compiled}"
    return text(
        f"UPDATE {table.name} SET {assignments} FROM unnest({arrays}) AS v(id, {', '.join(columns)}) "
        f"WHERE {table.name}.id = v.id{condition} RETURNING {table.name}.id"
    )


def insert_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    unique_index: Sequence[str],
    index_where: TextClause | None = None,
) -> list[Any]:
    """Insert ``rows`` in one statement, skipping those that would break ``unique_index`` (a partial one when
    ``index_where`` is its predicate, as literal SQL: PostgreSQL cannot match a bound parameter to an index
    predicate once the statement is prepared); return the new rows' ``id`` and unique columns.

    On PostgreSQL the rows travel as one array per column (``INSERT ... SELECT FROM unnest(...)``), so every
    batch size shares one statement text, compiled once and prepared by the server, where a multi-row
    ``VALUES`` would be compiled anew for each size. SQLite (the embedded mode) gets the multi-row ``VALUES``.
    """
    if not rows:
        return []
    if not is_postgresql(session):
        values = (
            sqlite.insert(table)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=list(unique_index) or None, index_where=index_where)
            .returning(table.c.id, *(table.c[name] for name in unique_index))
        )
        return list(session.execute(values).all())
    columns = tuple(rows[0])
    predicate = "" if index_where is None else str(index_where)
    arrays = _insert_from_arrays(table, columns, tuple(unique_index), predicate)
    return list(session.execute(arrays, {name: _array_of(table, name, rows) for name in columns}).all())


def _array_of(table: Table, name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Column ``name`` of ``rows`` as a parameter array; JSON values wrapped for psycopg, which adapts no dict."""
    if isinstance(table.c[name].type, JSON):
        return [None if row[name] is None else Jsonb(row[name]) for row in rows]
    return [row[name] for row in rows]


@cache
def _insert_from_arrays(
    table: Table, columns: tuple[str, ...], unique_index: tuple[str, ...], index_where: str
) -> TextClause:
    arrays = ", ".join(_array_parameter(table, name) for name in columns)
    target = f"({', '.join(unique_index)})" if unique_index else ""
    if index_where:
        target += f" WHERE {index_where}"
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT {target} DO NOTHING RETURNING {', '.join(('id', *unique_index))}"
    )


def _array_parameter(table: Table, name: str) -> str:
    return f"CAST(:{name} AS {table.c[name].type.compile(dialect=postgresql.dialect())}[])"


def lock_for_transaction(session: Session, lock_id: int) -> None:
    """Serialise every transaction that takes ``lock_id`` until it ends (SQLite's writers already are)."""
    if is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": lock_id})


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit and flush only when told."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def alembic_config(url: str) -> Any:
    """Alembic's configuration for the migrations shipped in ``shared/migrations``, pointed at ``url``."""
    from alembic.config import Config  # imported here: the services that never migrate skip its start-up

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the database at ``url`` to the newest schema. Idempotent."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
