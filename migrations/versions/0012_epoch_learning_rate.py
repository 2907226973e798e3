"""Each epoch record stores the learning rate it trained at (``epoch_metrics.learning_rate``,
issue 26's schedules). Records stored before stay NULL: their rate is the job's spec.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.add_column(sa.Column("learning_rate", sa.Float(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("learning_rate")
