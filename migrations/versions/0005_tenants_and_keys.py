"""Tenants and API keys: every data set, job, model, name and alias belongs to a tenant (rows
from before are the ``default`` tenant's); keys; the sizes that storage quotas count; the
request id a job was submitted with.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAME = sa.String(length=64)
TENANT = sa.String(length=64)
KEEP_IDS = {"sqlite_autoincrement": True}


def tenant_column() -> sa.Column:
    return sa.Column("tenant", TENANT, nullable=False, server_default="default")


def upgrade() -> None:
    """Upgrade schema."""
    # The registry's keys gain the tenant: drop the constraints that point at them first.
    with op.batch_alter_table("model_aliases") as batch:
        batch.drop_constraint(batch.f("fk_model_aliases_name_models"), type_="foreignkey")
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.drop_constraint(batch.f("fk_models_name_model_names"), type_="foreignkey")
        batch.drop_constraint(batch.f("uq_models_name"), type_="unique")
    with op.batch_alter_table("model_names") as batch:
        batch.add_column(sa.Column("tenant", TENANT, nullable=False, server_default="default"))
        batch.drop_constraint(batch.f("pk_model_names"), type_="primary")
        batch.create_primary_key(batch.f("pk_model_names"), ["tenant", "name"])
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(tenant_column())
        batch.add_column(
            sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index(batch.f("ix_models_tenant"), ["tenant"])
        batch.create_unique_constraint(batch.f("uq_models_tenant"), ["tenant", "name", "version"])
        batch.create_foreign_key(
            batch.f("fk_models_tenant_model_names"),
            "model_names",
            ["tenant", "name"],
            ["tenant", "name"],
        )
    with op.batch_alter_table("model_aliases") as batch:
        batch.add_column(sa.Column("tenant", TENANT, nullable=False, server_default="default"))
        batch.drop_constraint(batch.f("pk_model_aliases"), type_="primary")
        batch.create_primary_key(batch.f("pk_model_aliases"), ["tenant", "name", "alias"])
        batch.create_foreign_key(
            batch.f("fk_model_aliases_tenant_models"),
            "models",
            ["tenant", "name", "version"],
            ["tenant", "name", "version"],
            ondelete="RESTRICT",
        )
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(tenant_column())
        batch.add_column(
            sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index(batch.f("ix_datasets_tenant"), ["tenant"])
    with op.batch_alter_table("training_jobs", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(tenant_column())
        batch.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_training_jobs_tenant"), ["tenant"])
        batch.drop_index(batch.f("ix_training_jobs_idempotency_key"))
        batch.create_index(
            "ix_training_jobs_tenant_idempotency_key", ["tenant", "idempotency_key"], unique=True
        )
    op.execute("UPDATE datasets SET stored_bytes = length(arrays)")
    op.execute("UPDATE models SET stored_bytes = length(blob)")
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column(
            "scope",
            sa.Enum(
                "read",
                "write",
                "admin",
                name="key_scope",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"])


def downgrade() -> None:
    """Downgrade schema: every row stays, as if every tenant's were one tenant's; this fails
    (and changes nothing on PostgreSQL) where two tenants use the same model name, or the same
    Idempotency-Key, which one tenant could not."""
    op.drop_index(op.f("ix_api_keys_tenant"), table_name="api_keys")
    op.drop_table("api_keys")
    with op.batch_alter_table("training_jobs", table_kwargs=KEEP_IDS) as batch:
        batch.drop_index(batch.f("ix_training_jobs_tenant"))
        batch.drop_index("ix_training_jobs_tenant_idempotency_key")
        batch.create_index(
            batch.f("ix_training_jobs_idempotency_key"), ["idempotency_key"], unique=True
        )
        batch.drop_column("request_id")
        batch.drop_column("tenant")
    with op.batch_alter_table("datasets", table_kwargs=KEEP_IDS) as batch:
        batch.drop_index(batch.f("ix_datasets_tenant"))
        batch.drop_column("stored_bytes")
        batch.drop_column("tenant")
    with op.batch_alter_table("model_aliases") as batch:
        batch.drop_constraint(batch.f("fk_model_aliases_tenant_models"), type_="foreignkey")
        batch.drop_constraint(batch.f("pk_model_aliases"), type_="primary")
        batch.create_primary_key(batch.f("pk_model_aliases"), ["name", "alias"])
        batch.drop_column("tenant")
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.drop_constraint(batch.f("fk_models_tenant_model_names"), type_="foreignkey")
        batch.drop_constraint(batch.f("uq_models_tenant"), type_="unique")
        batch.drop_index(batch.f("ix_models_tenant"))
        batch.drop_column("stored_bytes")
        batch.drop_column("tenant")
    with op.batch_alter_table("model_names") as batch:
        batch.drop_constraint(batch.f("pk_model_names"), type_="primary")
        batch.create_primary_key(batch.f("pk_model_names"), ["name"])
        batch.drop_column("tenant")
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.create_unique_constraint(batch.f("uq_models_name"), ["name", "version"])
        batch.create_foreign_key(
            batch.f("fk_models_name_model_names"), "model_names", ["name"], ["name"]
        )
    with op.batch_alter_table("model_aliases") as batch:
        batch.create_foreign_key(
            batch.f("fk_model_aliases_name_models"),
            "models",
            ["name", "version"],
            ["name", "version"],
            ondelete="RESTRICT",
        )
