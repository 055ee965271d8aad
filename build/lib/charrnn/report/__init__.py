"""Self-contained HTML reports: one page per experiment, an index with the suite's verdicts, the
kernel page, and `verdicts.csv`.

`charrnn report [EXPERIMENT ...] [--out DIR]` → `reports/<experiment>.html`, `reports/index.html`,
`reports/verdicts.csv` (+ `reports/kernels.html` when benchmark JSON exists). Modules:
`base` (the leaf: data model, errors, constants, templates, paths), `figures` (matplotlib),
`tables`, `plots`, `details`, `claims_view` (verdicts, forest plot, CSV), `pages` (one
experiment, the index), `store` (the MLflow store's view), `kernels`, `kernels_sweep`,
`kernels_scan` (the kernels page), `run` (the entry point). None imports
torch; only `store` reaches MLflow, through `charrnn.tracking`. This file imports nothing, so
importing one module never drags in the others.
"""
