"""A run's dataset inputs (the MLflow UI's Dataset column): what `mlflow.log_input` logs, through the
public entities, since charrnn drives runs through a client rather than the fluent API's active run."""
from __future__ import annotations

import json

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException

from charrnn.tracking.mlflow_private import MLFLOW_DATASET_CONTEXT
from charrnn.tracking.run_handle import RunHandle

MAX_DIGEST = 36                    # characters MLflow keeps of a dataset digest


def log_dataset(run: RunHandle, name: str, sha256: str, source: str, context: str = "training") -> None:
    """Log `name` as a dataset input of `run`: digest = the checksum (its first MAX_DIGEST - 4
    hex digits), the full sha256 in the profile, `source` (a path) as its local source.

    Runs of other drivers or workers log the same dataset into the same experiment at the same
    moment. The store looks a dataset up and then inserts it, in one transaction, so the slower of
    two writers can fail on the dataset's UNIQUE constraint; nothing of its write is kept, and the
    dataset now exists, so writing once more links this run to it."""
    dataset = Dataset(name=name, digest=sha256[:MAX_DIGEST - 4], source_type="local",
                      source=json.dumps({"uri": source}), profile=json.dumps({"sha256": sha256}))
    inputs = [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    try:
        run.client.log_inputs(run.run_id, inputs)
    except MlflowException:
        run.client.log_inputs(run.run_id, inputs)
