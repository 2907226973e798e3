"""A model's own OpenAPI document (issue 22) is a contract the live service keeps: schemathesis,
with every check, against the predict operation it describes."""

import subprocess
import sys
from pathlib import Path

from openapi_spec_validator import validate as validate_openapi

from tests.integration.conftest import ON_EMBEDDED

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
IRIS_JOB = {
    "model_name": "contract-iris",
    "network": {
        "layers": [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "softmax"}]
    },
    "training": {"epochs": 20, "seed": 1},
}


@ON_EMBEDDED
def test_schemathesis_finds_nothing_against_a_models_own_document(stack, tmp_path):
    with open(ROOT / "examples" / "data" / "iris.csv", "rb") as file:
        dataset = stack.create(
            "/v1/datasets", 201, files={"file": file}, data={"target": "species"}
        )
    job = stack.create("/v1/jobs", 202, json={**IRIS_JOB, "dataset_id": dataset["id"]})
    assert stack.wait_for_job(job["id"])["status"] == "succeeded"
    url = f"{stack.base_url}/v1/models/contract-iris/openapi.json"
    validate_openapi(stack.get("/v1/models/contract-iris/openapi.json").json())
    # Run from an empty folder: the repository's schemathesis.toml allows the main API's 422s
    # to schema-valid bodies, and this document must need no such allowance.
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            url,
            "--checks",
            "all",
            "--max-examples",
            "60",
            "--seed",
            "1",
            "--generation-database",
            "none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout or "passed" in done.stdout, done.stdout[-2000:]
