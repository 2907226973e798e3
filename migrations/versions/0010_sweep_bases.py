"""A sweep stores its base body once (``sweeps.base``) and each trial's parameters only, instead
of every trial's resolved specs. Sweeps already stored keep their trials as they are (their
``base`` is NULL, and they are read as before).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("sweeps", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("base", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("sweeps", table_kwargs=KEEP_IDS) as batch:
        batch.drop_column("base")
