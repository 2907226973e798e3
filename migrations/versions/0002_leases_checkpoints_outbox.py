"""Jobs that survive: leases, cancellation, the dispatch outbox, idempotency keys, checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JOB_COLUMNS = [
    sa.Column("lease_owner", sa.String(length=200), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("cancel_requested", sa.Boolean(), server_default="0", nullable=False),
    sa.Column("idempotency_key", sa.String(length=200), nullable=True),
    sa.Column("request_hash", sa.String(length=64), nullable=True),
    sa.Column("checkpoint_epoch", sa.Integer(), nullable=True),
]


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("training_jobs") as batch:
        for column in JOB_COLUMNS:
            batch.add_column(column)
        batch.create_index(
            batch.f("ix_training_jobs_lease_expires_at"), ["lease_expires_at"], unique=False
        )
        batch.create_index(
            batch.f("ix_training_jobs_idempotency_key"), ["idempotency_key"], unique=True
        )
    op.create_table(
        "job_checkpoints",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["training_jobs.id"],
            name=op.f("fk_job_checkpoints_job_id_training_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_checkpoints")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("job_checkpoints")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_index(batch.f("ix_training_jobs_idempotency_key"))
        batch.drop_index(batch.f("ix_training_jobs_lease_expires_at"))
        for column in reversed(JOB_COLUMNS):
            batch.drop_column(column.name)
