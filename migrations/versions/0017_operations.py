"""Operations: requests answered later (a promotion gate on a large data set, a feature
importance above the synchronous limit), run by a worker, polled at /v1/operations/{id}.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}


def string_enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False, server_default="default"),
        sa.Column("kind", string_enum("operation_kind", "promotion", "importance"), nullable=False),
        sa.Column(
            "status",
            string_enum("operation_status", "queued", "running", "succeeded", "failed"),
            nullable=False,
        ),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        **KEEP_IDS,
    )
    for column in ("tenant", "status"):
        op.create_index(op.f(f"ix_operations_{column}"), "operations", [column])


def downgrade() -> None:
    """Downgrade schema."""
    for column in ("status", "tenant"):
        op.drop_index(op.f(f"ix_operations_{column}"), table_name="operations")
    op.drop_table("operations")
