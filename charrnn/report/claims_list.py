"""The per-grid claims list of docs/claims-and-verdicts.md, generated from the claim grids themselves.

    python -m charrnn.report.claims_list docs/claims-and-verdicts.md

rewrites the lines between CLAIMS_LIST_START and CLAIMS_LIST_END: one entry per claim grid
(`ablations/*.yaml` but the smoke grid), its question and each claim as the loader reads it (id,
what it claims, whether it tests its source or our extrapolation). tests/test_docs.py fails when the
file drifts from the grids.
"""
from __future__ import annotations

import sys
from pathlib import Path

from charrnn.grid.spec import load_grid
from .base import section_main, splice_between

CLAIMS_LIST_START = "<!-- claims-list:start (generated from ablations/*.yaml: python -m charrnn.report.claims_list) -->"
CLAIMS_LIST_END = "<!-- claims-list:end -->"
ABLATIONS = Path(__file__).resolve().parents[2] / "ablations"
NOT_CLAIM_GRIDS = {"smoke"}          # the plumbing check `make smoke` runs, not a claim grid


def claim_grid_files(folder: Path = ABLATIONS) -> list[Path]:
    return [p for p in sorted(folder.glob("*.yaml")) if p.stem not in NOT_CLAIM_GRIDS]


def claims_list(folder: Path = ABLATIONS) -> str:
    lines = []
    for path in claim_grid_files(folder):
        grid = load_grid(path)
        lines.append(f"- **`{grid.name}`** (`ablations/{path.name}`): {grid.question}")
        for claim in grid.claims:
            lines.append(f"  - `{claim.id}` — {claim.describe()} ({claim.tests or 'scope not stated'})")
    return "\n".join(lines)


def splice(document: str, block: str) -> str:
    return splice_between(document, block, CLAIMS_LIST_START, CLAIMS_LIST_END)


def main(argv: list[str] | None = None) -> int:
    return section_main(argv, "Rewrite the per-grid claims list of a markdown file.",
                        (CLAIMS_LIST_START, CLAIMS_LIST_END), claims_list, "claims_list")


if __name__ == "__main__":
    sys.exit(main())
