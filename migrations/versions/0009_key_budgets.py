"""A key minted over /v1/keys spends the rate budget of the key that minted it:
``api_keys.budget_key_id``, the key made by the CLI at the root of its minting chain.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("api_keys", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("budget_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("api_keys", table_kwargs=KEEP_IDS) as batch:
        batch.drop_column("budget_key_id")
