"""A data set's arrays stored from a file in pieces, within the session's transaction: never
whole in memory (docs/benchmarks.md, issue 29: binding an 80 MB ``.npz`` to an ``INSERT`` made
two more copies of it on SQLite, one on PostgreSQL).

SQLite: a ``zeroblob`` of the file's size, left unmaterialised because ``arrays`` is its row's
last column, filled by blob I/O. PostgreSQL: ``COPY ... FROM STDIN`` in binary format, the row's
header written here and the blob's bytes sent as they are read.
"""

import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

from sqlalchemy import Engine, func, insert
from sqlalchemy.orm import Session

from service.db.models import DatasetBlob
from service.db.session import set_until_returned

PIECE_BYTES = 1 << 20
# SQLite's default page cache (2,000 KiB in pages of 4 kB), kept for the rest of the transaction.
SQLITE_CACHE_PAGES = 500


def file_pieces(file: BinaryIO) -> Iterator[memoryview]:
    """``file`` from where it is to its end, ``PIECE_BYTES`` at a time, each piece a view of
    one reused buffer (valid until the next is read)."""
    buffer = bytearray(PIECE_BYTES)
    view = memoryview(buffer)
    while count := file.readinto(buffer):
        yield view[:count]


def write_sqlite(session: Session, dataset_id: int, npz: BinaryIO, size: int) -> None:
    hold_in_page_cache(session, size)
    session.execute(insert(DatasetBlob).values(dataset_id=dataset_id, arrays=func.zeroblob(size)))
    sqlite = session.connection().connection.driver_connection
    # dataset_id is the table's INTEGER PRIMARY KEY, that is its rowid.
    with sqlite.blobopen(DatasetBlob.__tablename__, "arrays", dataset_id) as blob:
        for piece in file_pieces(npz):
            blob.write(piece)


def hold_in_page_cache(session: Session, size: int) -> None:
    """Let the connection's page cache hold ``size`` bytes more until it goes back to the pool.

    SQLite's default cache (2 MB) spills a blob's pages to the WAL as they are made: the
    ``zeroblob``'s zeros were written, read back and written again with the data. Held in the
    cache, its pages are filled in memory and written once, at the commit (0.1 to 0.6 s less
    for 80 MB, docs/benchmarks.md, issue 29). The cache then holds the arrays once, after the
    parse has freed its memory: below the parse's peak; it is emptied when the connection goes
    back to the pool (service/db/session.py)."""
    connection = session.connection()
    page_bytes = connection.exec_driver_sql("PRAGMA page_size").scalar()
    set_until_returned(connection, "cache_size", size // page_bytes + 1 + SQLITE_CACHE_PAGES)


# PostgreSQL's binary COPY: the signature, flags and header extension length, then per row
# the number of fields and each field's length and bytes; -1 fields ends the data.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_ROW = struct.Struct("!hiii")  # 2 fields: int4 dataset_id (4 bytes), then the blob's length
COPY_END = struct.pack("!h", -1)


def write_postgresql(session: Session, dataset_id: int, npz: BinaryIO, size: int) -> None:
    statement = "COPY dataset_arrays (dataset_id, arrays) FROM STDIN (FORMAT BINARY)"
    postgresql = session.connection().connection.driver_connection
    with postgresql.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(COPY_SIGNATURE + COPY_ROW.pack(2, 4, dataset_id, size))
        for piece in file_pieces(npz):
            copy.write(piece)
        copy.write(COPY_END)


ARRAY_WRITERS: dict[str, Callable[[Session, int, BinaryIO, int], None]] = {
    "sqlite": write_sqlite,
    "postgresql": write_postgresql,
}


def write_dataset_arrays(session: Session, dataset_id: int, npz: BinaryIO, size: int) -> None:
    """Store ``size`` bytes of ``.npz`` from ``npz`` (at its start) as the arrays of data set
    ``dataset_id``, in the session's transaction."""
    ARRAY_WRITERS[session.get_bind().dialect.name](session, dataset_id, npz, size)


def defer_wal_checkpoint(session: Session) -> None:
    """On SQLite, leave the checkpoint the transaction's commit would make to ``checkpoint_wal``.

    A commit that leaves more than 1,000 pages in the WAL copies them into the database file
    and syncs it: for an 80 MB data set, about half the commit's time (docs/benchmarks.md,
    issue 29). The commit still syncs the WAL, so the data set is as durable when it returns;
    the copy can wait until the response is sent. The connection's automatic checkpoints
    resume when it goes back to the pool (service/db/session.py)."""
    if session.get_bind().dialect.name == "sqlite":
        set_until_returned(session.connection(), "wal_autocheckpoint", 0)


def checkpoint_wal(engine: Engine) -> None:
    """Copy SQLite's WAL into the database file as far as no reader still needs it (passive:
    it waits for no one); nothing on PostgreSQL."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
