"""`charrnn report`: render experiments from the store, the kernel page and the index."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from . import store
from .base import Rendered, reports_dir
from .kernels import render_kernels
from .pages import render_experiment, render_index


def render_reports(experiments: list[str] | None = None, out: str | Path | None = None,
                   log_to_parent: bool = True) -> list[Rendered]:
    """Render `experiments` (default: every grid experiment in the store), the kernel page when
    benchmark JSON exists, the index and `verdicts.csv`. Each page is also logged to its grid's
    parent run."""
    out_dir = reports_dir(out)
    names = experiments or store.experiment_names()
    for name in names:                 # every name checked before anything is written
        store.require_experiment(name)
    done = []
    for name in names:
        t0 = time.perf_counter()
        exp = store.load_experiment(name)
        rendered = replace(render_experiment(exp, out_dir), seconds=time.perf_counter() - t0)
        if log_to_parent and exp.parent_run_id:
            store.log_report(exp.parent_run_id, rendered.path)
        done.append(rendered)
    render_kernels(out_dir)
    render_index(out_dir)
    return done
