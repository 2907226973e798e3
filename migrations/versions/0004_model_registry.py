"""The model registry: names with numbered versions, and aliases that point at one version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME = sa.String(length=64)
# Batch mode rebuilds the models table on SQLite, and reflection does not see AUTOINCREMENT:
# without this, ids would be reused after a delete, and caches keyed by id would go stale.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "model_names",
        sa.Column("name", NAME, nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model_names")),
    )
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("model_name", NAME, nullable=True))
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("name", NAME, nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch.create_unique_constraint(batch.f("uq_models_name"), ["name", "version"])
        batch.create_foreign_key(
            batch.f("fk_models_name_model_names"), "model_names", ["name"], ["name"]
        )
    op.create_table(
        "model_aliases",
        sa.Column("name", NAME, nullable=False),
        sa.Column("alias", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["models.name", "models.version"],
            name=op.f("fk_model_aliases_name_models"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_model_aliases")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("model_aliases")
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.drop_constraint(batch.f("fk_models_name_model_names"), type_="foreignkey")
        batch.drop_constraint(batch.f("uq_models_name"), type_="unique")
        batch.drop_column("version")
        batch.drop_column("name")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("model_name")
    op.drop_table("model_names")
