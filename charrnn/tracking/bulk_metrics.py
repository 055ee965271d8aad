"""Curves of many runs at once: a SQL store answers the points of many runs in one query.

Through `get_metric_history` a 2,000-step curve costs ~70 ms per run and key (18 s for the curves
of a 200-run grid).
"""
from __future__ import annotations

from typing import Any, Iterable

from charrnn.tracking.store import Tracker

METRIC_QUERY_CHUNK = 500          # run ids per bulk query
MAX_METRIC_POINTS = 2**31 - 1     # the bulk query's row limit: all of them
MLFLOW_PRIVATE_API_CHECKED = "3.17.2"   # the MLflow version `sql_store` was checked against


def sql_store(tracker: Tracker) -> Any | None:
    """The SQL store behind `tracker`'s client, or None for any other store (an MLflow server).

    The one private MLflow name charrnn reads: MLflow has no public accessor for a client's store,
    so this is `MlflowClient._tracking_client.store` (checked against MLFLOW_PRIVATE_API_CHECKED).
    What is called on it, `get_metric_history_bulk`, is the store's documented method."""
    store = getattr(getattr(tracker.client, "_tracking_client", None), "store", None)
    return store if hasattr(store, "get_metric_history_bulk") else None


def metric_histories(tracker: Tracker, run_ids: Iterable[str],
                     keys: Iterable[str]) -> list[tuple[str, str, int, float, int]]:
    """(run_id, key, step, value, timestamp_ms) of every value of `keys` logged by `run_ids`, in
    no particular order. A SQL store answers in one query per key and 500 runs; any other store
    is read run by run through `get_metric_history`."""
    run_ids, keys = list(run_ids), list(keys)
    store = sql_store(tracker)
    if store is None:
        return [(rid, key, step, value, ts) for rid in run_ids for key in keys
                for step, value, ts in tracker.metric_history(rid, key)]
    return [(found.run_id, key, int(found.step), float(found.value), int(found.timestamp))
            for i in range(0, len(run_ids), METRIC_QUERY_CHUNK) for key in keys
            for found in store.get_metric_history_bulk(run_ids[i:i + METRIC_QUERY_CHUNK], key, MAX_METRIC_POINTS)]
