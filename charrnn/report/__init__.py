"""Self-contained HTML reports: one page per experiment, an index with the suite's verdicts, the
kernel page, and `verdicts.csv`.

`charrnn report [EXPERIMENT ...] [--out DIR]` → `reports/<experiment>.html`, `reports/index.html`,
`reports/verdicts.csv` (+ `reports/kernels.html` when benchmark JSON exists). Modules:
`base` (the leaf: data model, errors, constants, templates, paths), `numbers` (the one number
formatter: 3 significant figures, units from the registry), `figures` (matplotlib), `tables`,
`plots`, `details`, `claims_view` (verdicts, Holm, CSV), `claim_display` (effects in the claimed
direction, the forest plots), `budget_view`, `pages` (one
experiment, the index), `store` (the MLflow store's view), `kernels`, `kernels_sweep`,
`kernels_scan` (the kernels page), `run` (the entry point). None imports
torch; only `store` reaches MLflow, through `charrnn.tracking`. This file imports nothing, so
importing one module never drags in the others.
"""
