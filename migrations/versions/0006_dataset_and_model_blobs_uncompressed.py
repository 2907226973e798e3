"""Data set arrays and model blobs stored without PostgreSQL's TOAST compression, as checkpoint
blobs are since 0003.

Float64 and float32 arrays are what pglz cannot shrink, but it spends time trying: inserting a
76 MB data set (200,000 x 49 float64) takes 1.47 s with the default storage and 0.51 s with
EXTERNAL (out of line, uncompressed), the larger part of a CSV upload's time. SQLite has no such
setting. Values stored before keep their storage until rewritten.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BLOB_COLUMNS = (("datasets", "arrays"), ("models", "blob"))


def _set_blob_storage(storage: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in BLOB_COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE {storage}")


def upgrade() -> None:
    """Upgrade schema."""
    _set_blob_storage("EXTERNAL")


def downgrade() -> None:
    """Downgrade schema."""
    _set_blob_storage("EXTENDED")
