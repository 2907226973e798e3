"""The storage quota counts every byte a tenant stores: ``stored_bytes`` on jobs (their JSON
specs, initial weights included), sweeps (their search and trials) and checkpoints (their blob),
filled in for the rows already there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}
# Table: (its table options, the SQL of the bytes its row holds). JSON is written as ASCII
# (json.dumps), so its length in characters is its length in bytes on both databases.
COUNTED = {
    "training_jobs": (
        KEEP_IDS,
        "COALESCE(LENGTH(CAST(network AS TEXT)), 0)"
        " + COALESCE(LENGTH(CAST(initial_weights AS TEXT)), 0)"
        " + COALESCE(LENGTH(CAST(training AS TEXT)), 0)",
    ),
    "sweeps": (
        KEEP_IDS,
        "LENGTH(CAST(search AS TEXT)) + LENGTH(CAST(trials AS TEXT))",
    ),
    "job_checkpoints": ({}, "LENGTH(blob)"),
}


def upgrade() -> None:
    """Upgrade schema."""
    for table, (options, size) in COUNTED.items():
        with op.batch_alter_table(table, table_kwargs=options) as batch:
            batch.add_column(
                sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0")
            )
        op.execute(f"UPDATE {table} SET stored_bytes = {size}")


def downgrade() -> None:
    """Downgrade schema."""
    for table, (options, _size) in COUNTED.items():
        with op.batch_alter_table(table, table_kwargs=options) as batch:
            batch.drop_column("stored_bytes")
