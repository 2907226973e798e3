"""Sample weights and lineage: a data set may carry each row's weight (``datasets.weighted``,
the array ``w`` beside ``X`` and ``y``), and a fine-tuned model names the model it started from
(``models.parent_model_id``). Rows stored before are unweighted and have no parent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("weighted", sa.Boolean(), nullable=False, server_default="0"))
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("parent_model_id", sa.Integer(), nullable=True))
        batch.create_index("ix_models_parent_model_id", ["parent_model_id"])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.drop_index("ix_models_parent_model_id")
        batch.drop_column("parent_model_id")
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.drop_column("weighted")
