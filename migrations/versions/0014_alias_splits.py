"""An alias may split its traffic between versions and run a shadow: ``model_aliases.split``
(a list of ``{"version", "weight"}``, NULL for one version), ``shadow`` (``{"version",
"sample"}`` or NULL) and ``split_id`` (new each time the alias is set, so that the requests
counted per version since then start from zero). ``version`` stays the version with the largest
weight: what the alias shows and what older readers follow. Aliases stored before point at one
version, as they did.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("model_aliases") as batch:
        batch.add_column(sa.Column("split", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("shadow", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("split_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("model_aliases") as batch:
        batch.drop_column("split_id")
        batch.drop_column("shadow")
        batch.drop_column("split")
