"""A run's dataset inputs (the MLflow UI's Dataset column): what `mlflow.log_input` logs, through the
public entities, since charrnn drives runs through a client rather than the fluent API's active run."""
from __future__ import annotations

import json

from mlflow.entities import Dataset, DatasetInput, InputTag

from charrnn.tracking.mlflow_private import MLFLOW_DATASET_CONTEXT
from charrnn.tracking.run_handle import RunHandle

MAX_DIGEST = 36                    # characters MLflow keeps of a dataset digest


def log_dataset(run: RunHandle, name: str, sha256: str, source: str, context: str = "training") -> None:
    """Log `name` as a dataset input of `run`: digest = the checksum (its first MAX_DIGEST - 4
    hex digits), the full sha256 in the profile, `source` (a path) as its local source."""
    dataset = Dataset(name=name, digest=sha256[:MAX_DIGEST - 4], source_type="local",
                      source=json.dumps({"uri": source}), profile=json.dumps({"sha256": sha256}))
    run.client.log_inputs(run.run_id, [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])])
