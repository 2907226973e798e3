"""Hyperparameter sweeps: the sweeps table, and trials tagged on their jobs (sweep, number,
parameters, early termination's rung decisions); a job may end ``pruned``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
STATUS_CHECK = "job_status"


def status_condition(statuses: tuple[str, ...]) -> str:
    return "status IN ({})".format(", ".join(f"'{status}'" for status in statuses))


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False, server_default="default"),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "succeeded",
                "failed",
                "cancelled",
                name="sweep_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("search", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(length=20), nullable=False),
        sa.Column("goal", sa.String(length=10), nullable=False),
        sa.Column("early_termination", sa.JSON(), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("next_trial", sa.Integer(), nullable=False),
        sa.Column("trials", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=True),
        sa.Column("best_job_id", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_sweeps_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
        **KEEP_IDS,
    )
    with op.batch_alter_table("sweeps") as batch:
        batch.create_index(batch.f("ix_sweeps_tenant"), ["tenant"])
        batch.create_index(batch.f("ix_sweeps_dataset_id"), ["dataset_id"])
        batch.create_index(batch.f("ix_sweeps_status"), ["status"])
    with op.batch_alter_table("training_jobs", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("sweep_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("trial", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rungs", sa.JSON(), nullable=True))
        batch.create_index(batch.f("ix_training_jobs_sweep_id"), ["sweep_id"])
        batch.create_unique_constraint(batch.f("uq_training_jobs_sweep_id"), ["sweep_id", "trial"])
        batch.create_foreign_key(
            batch.f("fk_training_jobs_sweep_id_sweeps"),
            "sweeps",
            ["sweep_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.drop_constraint(batch.f(f"ck_training_jobs_{STATUS_CHECK}"), type_="check")
        batch.create_check_constraint(STATUS_CHECK, status_condition((*JOB_STATUSES, "pruned")))


def downgrade() -> None:
    """Downgrade schema: pruned trials become cancelled jobs."""
    op.execute("UPDATE training_jobs SET status = 'cancelled' WHERE status = 'pruned'")
    with op.batch_alter_table("training_jobs", table_kwargs=KEEP_IDS) as batch:
        batch.drop_constraint(batch.f(f"ck_training_jobs_{STATUS_CHECK}"), type_="check")
        batch.create_check_constraint(STATUS_CHECK, status_condition(JOB_STATUSES))
        batch.drop_constraint(batch.f("fk_training_jobs_sweep_id_sweeps"), type_="foreignkey")
        batch.drop_constraint(batch.f("uq_training_jobs_sweep_id"), type_="unique")
        batch.drop_index(batch.f("ix_training_jobs_sweep_id"))
        batch.drop_column("rungs")
        batch.drop_column("params")
        batch.drop_column("trial")
        batch.drop_column("sweep_id")
    op.drop_table("sweeps")
