"""The prediction log (``prediction_logs``: one row per row predicted; ``prediction_bin_counts``:
what is kept of the inputs when they are not), and on each model the
training rows' reference profile that drift is measured against and the dispatcher's latest live
figures. Models stored before have neither: their drift answers that no reference was kept.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("reference", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("live_figures", sa.JSON(), nullable=True))
    op.create_table(
        "prediction_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("prediction_id", sa.String(length=32), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("alias", sa.String(length=64), nullable=True),
        sa.Column("split_arm", sa.String(length=64), nullable=True),
        sa.Column("inputs", sa.LargeBinary(), nullable=True),
        sa.Column("prediction", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.LargeBinary(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_logs")),
        sa.UniqueConstraint("prediction_id", "row", name=op.f("uq_prediction_logs_prediction_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_prediction_logs_model_id_created_at", "prediction_logs", ["model_id", "created_at"]
    )
    op.create_index(op.f("ix_prediction_logs_created_at"), "prediction_logs", ["created_at"])
    op.create_index(op.f("ix_prediction_logs_tenant"), "prediction_logs", ["tenant"])
    op.create_table(
        "prediction_bin_counts",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feature", sa.Integer(), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
        sa.PrimaryKeyConstraint(
            "model_id", "hour", "feature", "bin", name=op.f("pk_prediction_bin_counts")
        ),
    )
    op.create_index(op.f("ix_prediction_bin_counts_tenant"), "prediction_bin_counts", ["tenant"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("prediction_bin_counts")
    op.drop_table("prediction_logs")
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.drop_column("live_figures")
        batch.drop_column("reference")
