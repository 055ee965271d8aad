"""`charrnn report`: render experiments from the store, the kernel page and the index."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from charrnn.tags import verdict_tag
from . import store
from .base import VERDICTS_CSV, Rendered, reports_dir
from .kernels import render_kernels
from .pages import render_experiment, render_index


def render_reports(experiments: list[str] | None = None, out: str | Path | None = None,
                   log_to_parent: bool = True) -> list[Rendered]:
    """Render `experiments` (default: every grid experiment in the store), the kernel page when
    benchmark JSON exists, the index and `verdicts.csv`. Each page is also logged to its grid's
    parent run, once the index has written its verdicts after Holm into it, and the parent's
    `verdict.<claim>` tags are set to those verdicts (the suite's Holm adjustment, as the index)."""
    out_dir = reports_dir(out)
    names = experiments or store.experiment_names()
    for name in names:                 # every name checked before anything is written
        store.require_experiment(name)
    done, parents = [], []
    for name in names:
        t0 = time.perf_counter()
        exp = store.load_experiment(name)
        done.append(replace(render_experiment(exp, out_dir), seconds=time.perf_counter() - t0))
        parents.append(exp.parent_run_id)
    render_kernels(out_dir)
    render_index(out_dir)              # also writes each page's verdicts after Holm into it
    suite = pd.read_csv(out_dir / VERDICTS_CSV, dtype=str).fillna("")
    for parent, rendered in zip(parents, done):
        if log_to_parent and parent:
            store.log_report(parent, rendered.path)
            mine = suite[suite["experiment"] == rendered.name]
            store.tag_run(parent, {verdict_tag(c): v for c, v in zip(mine["claim"], mine["adjusted_verdict"])})
    return done
