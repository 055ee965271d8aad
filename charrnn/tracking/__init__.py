"""The only package that talks to MLflow.

- `store`: where the store is, `Tracker` (experiments, runs, preregistered claims) and `StoredRun`;
- `run_handle`: `RunHandle`, one run being written (buffered metrics, artifacts, its end);
- `bulk_metrics`: the curves of many runs in one query;
- `failures`: a store that refuses work, as one line;
- `ui`: the MLflow UI as `make ui` serves it.
"""
