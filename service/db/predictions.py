"""The prediction log in the database: batches written, pages and rows read, feedback stored,
windows read for drift and live accuracy, and retention's deletes in batches.

A tenant's session (service/db/tenancy.py) sees only its tenant's rows; the API writes batches
and the dispatcher deletes through sessions without a tenant, naming it on each row.
"""

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import chain, repeat
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from service.db.models import PredictionBinCount, PredictionRecord, TrainedModel, utcnow

# INSERT ... ON CONFLICT DO UPDATE, as each database spells it in SQLAlchemy.
UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


# A logged request's columns: the same for each of its rows, then each row's own.
SHARED_COLUMNS = (
    "prediction_id",
    "tenant",
    "model_id",
    "model_name",
    "model_version",
    "alias",
    "split_arm",
    "latency_ms",
    "created_at",
)
ROW_COLUMNS = ("row", "inputs", "prediction", "probabilities")
# Rows per INSERT on SQLite (_insert_rows): 832 variables, within SQLite's oldest limit (999).
SQLITE_ROWS_PER_INSERT = 64


class LogRows(NamedTuple):
    """One logged request's rows, as the log's thread hands them over: ``shared`` holds the
    values of SHARED_COLUMNS (one per column), ``columns`` the values of ROW_COLUMNS (one list
    per column, one value per row)."""

    shared: tuple
    columns: tuple[list, ...]


class _LogInsert(NamedTuple):
    sql: str
    shared: tuple[Callable | None, ...]
    row: tuple[Callable | None, ...]


@functools.cache
def _log_insert(dialect_class: type[Dialect]) -> _LogInsert:
    """The statement the driver runs for a batch (sqlite3: an INSERT of positional
    parameters; psycopg: a COPY) and each column's bind processor (None when the driver takes
    the value as it is): SQLAlchemy's own, so that a row is stored exactly as SQLAlchemy's
    insert would store it."""
    dialect = dialect_class()
    columns = SHARED_COLUMNS + ROW_COLUMNS
    table = PredictionRecord.__table__
    processors = insert(table).compile(dialect=dialect, column_keys=columns)._bind_processors
    names = ", ".join(dialect.identifier_preparer.quote(column) for column in columns)
    if dialect.name == "postgresql":
        sql = f"COPY {table.name} ({names}) FROM STDIN"
    else:
        sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
    return _LogInsert(
        sql,
        tuple(processors.get(column) for column in SHARED_COLUMNS),
        tuple(processors.get(column) for column in ROW_COLUMNS),
    )


def _encoded_rows(statement: _LogInsert, requests: list[LogRows]) -> list[tuple]:
    """Every row of ``requests`` as the driver's parameters, built column by column (a column
    is one ``map`` over the batch, no Python loop per row and column): a request's shared
    values are encoded once and repeated for each of its rows."""
    counts = [len(request.columns[0]) for request in requests]
    columns = []
    for index, process in enumerate(statement.shared):
        values = [request.shared[index] for request in requests]
        if process is not None:
            values = list(map(process, values))
        columns.append(list(chain.from_iterable(map(repeat, values, counts))))
    for index, process in enumerate(statement.row):
        values = list(chain.from_iterable(request.columns[index] for request in requests))
        columns.append(values if process is None else list(map(process, values)))
    return list(zip(*columns, strict=True))


def _copy_rows(connection: Connection, copy_sql: str, rows: list[tuple]) -> None:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` (psycopg's ``write_row``), which
    costs the log's thread a fifth less CPU per row than psycopg's ``executemany``."""
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row(row)


def write_batch(session: Session, requests: list[LogRows]) -> int:
    """Insert the rows of ``requests`` with the driver's own bulk insert (SQLAlchemy's
    ``executemany``, with its per-row bind processing, cost the log's thread up to twice the
    CPU, holding the GIL the requests need): sqlite3's ``executemany``, PostgreSQL's COPY; in
    the session's transaction, then commit; how many rows."""
    connection = session.connection()
    statement = _log_insert(type(connection.dialect))
    rows = _encoded_rows(statement, requests)
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        _copy_rows(connection, statement.sql, rows)
    else:
        _insert_rows(connection.connection.driver_connection, statement.sql, rows)
    session.commit()
    return len(rows)


def _insert_rows(driver_connection, one_row_sql: str, rows: list[tuple]) -> None:
    """SQLite: the rows in order, ``SQLITE_ROWS_PER_INSERT`` to a statement. sqlite3 releases
    the GIL around each step of a statement: one INSERT per row (``executemany``'s) had the
    log's thread hand a busy worker's GIL over and wait for it again at every row."""
    for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        group = rows[start : start + SQLITE_ROWS_PER_INSERT]
        sql = _rows_insert(one_row_sql, len(group))
        driver_connection.execute(sql, tuple(chain.from_iterable(group)))


@functools.cache
def _rows_insert(one_row_sql: str, n_rows: int) -> str:
    """``one_row_sql``'s INSERT with ``n_rows`` rows of values."""
    into, _, values = one_row_sql.partition(" VALUES ")
    return f"{into} VALUES {', '.join([values] * n_rows)}"


def add_bin_counts(session: Session, counts: list[dict[str, Any]]) -> None:
    """Add ``counts`` (each the columns of a ``PredictionBinCount``) to the stored ones, in one
    statement (an upsert), and commit."""
    if not counts:
        return
    statement = UPSERTS[session.get_bind().dialect.name](PredictionBinCount).values(counts)
    keys = ["model_id", "hour", "feature", "bin"]
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={"count": PredictionBinCount.count + statement.excluded.count}
    )
    session.execute(statement)
    session.commit()


def bin_counts_since(
    session: Session, model_id: int, since: datetime
) -> list[tuple[int, int, int]]:
    """(feature, bin, count) summed over the model's hours that start at ``since`` or later."""
    statement = (
        select(
            PredictionBinCount.feature, PredictionBinCount.bin, func.sum(PredictionBinCount.count)
        )
        .where(PredictionBinCount.model_id == model_id, PredictionBinCount.hour >= since)
        .group_by(PredictionBinCount.feature, PredictionBinCount.bin)
    )
    return [(feature, bin_, int(count)) for feature, bin_, count in session.execute(statement)]


def window_predictions(session: Session, model_id: int, since: datetime, limit: int) -> list[Any]:
    """What the model answered on its newest ``limit`` rows logged at ``since`` or later."""
    statement = (
        select(PredictionRecord.prediction)
        .where(PredictionRecord.model_id == model_id, PredictionRecord.created_at >= since)
        .order_by(PredictionRecord.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def delete_bin_counts(session: Session, before: datetime) -> int:
    """Delete the bin counts of hours before ``before`` and of models that no longer exist (a
    few hundred rows per model and hour: one statement)."""
    statement = delete(PredictionBinCount).where(
        (PredictionBinCount.hour < before)
        | PredictionBinCount.model_id.not_in(select(TrainedModel.id))
    )
    deleted = session.execute(statement).rowcount
    session.commit()
    return deleted


def list_predictions(
    session: Session,
    model_id: int,
    after: int,
    limit: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[PredictionRecord]:
    """The model's log rows whose ``id`` is above ``after``, oldest first, at most ``limit``,
    logged at ``since`` or later and before ``until`` when given."""
    statement = select(PredictionRecord).where(
        PredictionRecord.model_id == model_id, PredictionRecord.id > after
    )
    if since is not None:
        statement = statement.where(PredictionRecord.created_at >= since)
    if until is not None:
        statement = statement.where(PredictionRecord.created_at < until)
    return list(session.scalars(statement.order_by(PredictionRecord.id).limit(limit)))


def prediction_rows(session: Session, prediction_id: str) -> list[PredictionRecord]:
    """The rows of one logged request, in row order, of a model that still exists."""
    statement = (
        select(PredictionRecord)
        .where(
            PredictionRecord.prediction_id == prediction_id,
            PredictionRecord.model_id.in_(select(TrainedModel.id)),
        )
        .order_by(PredictionRecord.row)
    )
    return list(session.scalars(statement))


class Feedback(NamedTuple):
    prediction_id: str
    row: int
    label: Any


def store_feedback(session: Session, items: Iterable[Feedback]) -> list[bool]:
    """Set the label of each item's logged row (a second label replaces the first); per item,
    whether its row was found (in this session's tenant, of a model that still exists). One
    commit for all."""
    now = utcnow()
    found = []
    for item in items:
        statement = (
            update(PredictionRecord)
            .where(
                PredictionRecord.prediction_id == item.prediction_id,
                PredictionRecord.row == item.row,
                PredictionRecord.model_id.in_(select(TrainedModel.id)),
            )
            .values(label=item.label, labelled_at=now)
            .execution_options(synchronize_session=False)
        )
        found.append(session.execute(statement).rowcount == 1)
    session.commit()
    return found


class WindowRows(NamedTuple):
    """A model's logged rows of a window that kept their inputs, and what it answered them."""

    inputs: list[np.ndarray]
    predictions: list[Any]


def window_rows(session: Session, model_id: int, since: datetime, limit: int) -> WindowRows:
    """The model's newest ``limit`` rows logged with their inputs at ``since`` or later."""
    statement = (
        select(PredictionRecord.inputs, PredictionRecord.prediction)
        .where(
            PredictionRecord.model_id == model_id,
            PredictionRecord.created_at >= since,
            PredictionRecord.inputs.is_not(None),
        )
        .order_by(PredictionRecord.id.desc())
        .limit(limit)
    )
    found = session.execute(statement).all()
    return WindowRows([inputs for inputs, _ in found], [prediction for _, prediction in found])


def models_logged_since(session: Session, since: datetime) -> list[int]:
    """The ids of the models with log rows at ``since`` or later."""
    statement = (
        select(PredictionRecord.model_id).where(PredictionRecord.created_at >= since).distinct()
    )
    return list(session.scalars(statement))


def _delete_ids(session: Session, ids: list[int]) -> int:
    if ids:
        session.execute(delete(PredictionRecord).where(PredictionRecord.id.in_(ids)))
    session.commit()
    return len(ids)


def delete_older_than(session: Session, before: datetime, batch: int) -> int:
    """Delete at most ``batch`` rows logged before ``before``; how many went. Each batch is its
    own short transaction that locks only the rows it deletes, so inserts go on meanwhile."""
    statement = (
        select(PredictionRecord.id)
        .where(PredictionRecord.created_at < before)
        .order_by(PredictionRecord.id)
        .limit(batch)
    )
    return _delete_ids(session, list(session.scalars(statement)))


def delete_orphans(session: Session, batch: int) -> int:
    """Delete at most ``batch`` rows of models that no longer exist; how many went."""
    statement = (
        select(PredictionRecord.id)
        .where(PredictionRecord.model_id.not_in(select(TrainedModel.id)))
        .order_by(PredictionRecord.id)
        .limit(batch)
    )
    return _delete_ids(session, list(session.scalars(statement)))


def models_over(session: Session, max_rows: int) -> list[int]:
    """The ids of the models with more than ``max_rows`` log rows."""
    statement = (
        select(PredictionRecord.model_id)
        .group_by(PredictionRecord.model_id)
        .having(func.count() > max_rows)
    )
    return list(session.scalars(statement))


def delete_beyond(session: Session, model_id: int, max_rows: int, batch: int) -> int:
    """Delete at most ``batch`` of the model's oldest rows beyond its newest ``max_rows``."""
    newest_kept = (
        select(PredictionRecord.id)
        .where(PredictionRecord.model_id == model_id)
        .order_by(PredictionRecord.id.desc())
        .offset(max_rows - 1)
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        select(PredictionRecord.id)
        .where(PredictionRecord.model_id == model_id, PredictionRecord.id < newest_kept)
        .order_by(PredictionRecord.id)
        .limit(batch)
    )
    return _delete_ids(session, list(session.scalars(statement)))


def set_live_figures(session: Session, model_id: int, figures: dict | None) -> None:
    session.execute(
        update(TrainedModel).where(TrainedModel.id == model_id).values(live_figures=figures)
    )
    session.commit()


def live_figures(session: Session) -> list[tuple[int, dict]]:
    """Every model's latest live figures (id, figures), of the models that have some."""
    statement = select(TrainedModel.id, TrainedModel.live_figures).where(
        TrainedModel.live_figures.is_not(None)
    )
    return [(model_id, figures) for model_id, figures in session.execute(statement)]


def count_since(session: Session, model_id: int, since: datetime) -> int:
    """How many rows the model logged at ``since`` or later."""
    statement = select(func.count()).where(
        PredictionRecord.model_id == model_id, PredictionRecord.created_at >= since
    )
    return session.scalar(statement)


def labelled_rows(
    session: Session, model_id: int, since: datetime, limit: int
) -> list[tuple[np.ndarray | None, Any]]:
    """(inputs, label) of the model's newest ``limit`` rows logged at ``since`` or later that
    were given a label."""
    statement = (
        select(PredictionRecord.inputs, PredictionRecord.label)
        .where(
            PredictionRecord.model_id == model_id,
            PredictionRecord.created_at >= since,
            PredictionRecord.label.is_not(None),
        )
        .order_by(PredictionRecord.id.desc())
        .limit(limit)
    )
    return [(inputs, label) for inputs, label in session.execute(statement)]


def reference_blob(session: Session, model_id: int) -> bytes | None:
    """The model's reference profile (.npz), None when it was trained before they were kept."""
    return session.scalar(select(TrainedModel.reference).where(TrainedModel.id == model_id))


def timed_rows(
    session: Session, model_id: int, since: datetime, limit: int
) -> list[tuple[datetime, Any, Any]]:
    """(created_at, prediction, label) of the model's newest ``limit`` rows logged at
    ``since`` or later."""
    statement = (
        select(PredictionRecord.created_at, PredictionRecord.prediction, PredictionRecord.label)
        .where(PredictionRecord.model_id == model_id, PredictionRecord.created_at >= since)
        .order_by(PredictionRecord.id.desc())
        .limit(limit)
    )
    return [tuple(found) for found in session.execute(statement)]
