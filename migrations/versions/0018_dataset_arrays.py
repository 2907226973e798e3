"""A data set's arrays in a table of their own, ``dataset_arrays(dataset_id, arrays)``, the blob
its last column.

SQLite leaves a ``zeroblob`` unmaterialised only in a record's last column; ``datasets.arrays``
was the 12th of 16, so every insert built the whole blob in memory twice (docs/benchmarks.md,
issue 29). With the arrays last in a row of their own, an upload inserts a ``zeroblob`` and
fills it in pieces. The rows already stored move with their arrays, both ways; on PostgreSQL
the new column keeps 0006's storage (EXTERNAL: out of line, not compressed).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "dataset_arrays",
        sa.Column("dataset_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("arrays", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_arrays_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_dataset_arrays")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dataset_arrays ALTER COLUMN arrays SET STORAGE EXTERNAL")
    op.execute("INSERT INTO dataset_arrays (dataset_id, arrays) SELECT id, arrays FROM datasets")
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.drop_column("arrays")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("arrays", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE datasets SET arrays = (SELECT arrays FROM dataset_arrays"
        " WHERE dataset_arrays.dataset_id = datasets.id)"
    )
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.alter_column("arrays", existing_type=sa.LargeBinary(), nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE datasets ALTER COLUMN arrays SET STORAGE EXTERNAL")
    op.drop_table("dataset_arrays")
