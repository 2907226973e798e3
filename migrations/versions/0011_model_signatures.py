"""Every model stores its signature (service/signatures.py): its named, typed inputs and its
outputs, so that they outlive the data set it was trained on.

Models stored before get one derived from their data set: the features' names (else ``x0..``,
``named`` false), the classes or target names, and the statistics of the rows the model trained
on (the same seeded split, computed again). A model whose data set is gone, or whose blob cannot
be read, gets statistics of None. This migration reads numpy arrays, so it uses the two pure
modules that define them: ``model_core`` (the split, the statistics) and ``service.signatures``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import io

import numpy as np
import sqlalchemy as sa
from alembic import op

from model_core import CorruptFileError, Model
from model_core.preprocessing import feature_statistics
from model_core.splits import training_rows
from service.signatures import model_signature, output_signature

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEEP_IDS = {"sqlite_autoincrement": True}

models = sa.table(
    "models",
    sa.column("id", sa.Integer),
    sa.column("dataset_id", sa.Integer),
    sa.column("task", sa.String),
    sa.column("n_features", sa.Integer),
    sa.column("network", sa.JSON),
    sa.column("classes", sa.JSON),
    sa.column("blob", sa.LargeBinary),
    sa.column("signature", sa.JSON),
)
datasets = sa.table(
    "datasets",
    sa.column("id", sa.Integer),
    sa.column("feature_names", sa.JSON),
    sa.column("target_names", sa.JSON),
    sa.column("n_outputs", sa.Integer),
    sa.column("arrays", sa.LargeBinary),
)


def dataset_rows(connection, dataset_id: int | None):
    """The data set's row (names and arrays), or None when it is gone."""
    if dataset_id is None:
        return None
    return connection.execute(sa.select(datasets).where(datasets.c.id == dataset_id)).first()


def trained_rows_statistics(blob: bytes, arrays: bytes) -> dict | None:
    """The statistics of the rows the model trained on, or None when its blob is unreadable."""
    try:
        training = Model.from_bytes(blob).training
    except CorruptFileError:
        return None
    x = np.load(io.BytesIO(arrays), allow_pickle=False)["X"]
    rows = training_rows(len(x), training["seed"], training["validation_split"])
    return feature_statistics(x, rows)


def derived_signature(connection, model) -> dict:
    dataset = dataset_rows(connection, model.dataset_id)
    dtype = (model.network or {}).get("dtype", "float64")
    n_outputs = dataset.n_outputs if dataset else 1
    outputs = output_signature(
        model.task, model.classes, dataset and dataset.target_names, n_outputs
    )
    statistics = dataset and trained_rows_statistics(model.blob, dataset.arrays)
    return model_signature(
        model.task,
        dataset and dataset.feature_names,
        model.n_features,
        dtype,
        outputs,
        statistics or None,
    )


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.add_column(sa.Column("signature", sa.JSON(), nullable=True))
    connection = op.get_bind()
    ids = connection.execute(sa.select(models.c.id).order_by(models.c.id)).scalars().all()
    for model_id in ids:
        model = connection.execute(sa.select(models).where(models.c.id == model_id)).one()
        signature = derived_signature(connection, model)
        connection.execute(
            models.update().where(models.c.id == model_id).values(signature=signature)
        )
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.alter_column("signature", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch:
        batch.drop_column("signature")
