"""Judge a committed runs table again under the current claims and write its verdicts.csv.

    python tools/rejudge_suite.py results/examples/quick.csv reports/examples/verdicts.csv [--was REF]

Each experiment's runs are judged by its grid in ablations/ (the claims as they stand now; tuned
grids on the run selected on validation, as the report does), Holm runs within each family, and
every verdict that changed against the previous verdicts.csv is printed with its reason. The
runs table holds no curves: `stable` and `budget_note` are carried over from the previous file for
claims it had. `--was REF`: the git revision whose ablations/ the runs were made under; a claim
whose canonical text differs from that revision's is marked "edited after data".
"""
from __future__ import annotations

import argparse
import math
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from charrnn.grid.spec import load_grid
from charrnn.report.base import VERDICT_COLUMNS
from charrnn.science import tuning
from charrnn.science.claims import parse_claims
from charrnn.science.verdict_table import EDITED, adjust_rows, verdict_row
from charrnn.science.verdicts import judge_claims

REPO = Path(__file__).resolve().parents[1]


def logged_texts(ref: str, name: str) -> dict[str, str]:
    """The canonical text of each claim of `ablations/<name>.yaml` at git revision `ref`."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:ablations/{name}.yaml"], capture_output=True,
                          text=True, check=True).stdout
    data = yaml.safe_load(text)
    lists = {k: tuple(v) for block in ("axes", "zip") for k, v in (data.get(block) or {}).items()}
    return {c.id: c.canonical_text() for c in parse_claims(data, lists)}


def rows_of(runs_csv: Path, was: str | None) -> list[dict]:
    frame = pd.read_csv(runs_csv, dtype={"seed": str}, low_memory=False)
    rows = []
    for name, runs in frame.groupby("experiment", sort=True):
        path = REPO / "ablations" / f"{name}.yaml"
        grid = load_grid(path)
        axes = [k for k, _ in (*grid.axes, *grid.zipped) if k in runs]
        tune = tuning.tune_of(yaml.safe_load(path.read_text(encoding="utf-8")))
        logged = logged_texts(was, name) if was else {}
        for v in judge_claims(runs.reset_index(drop=True), grid.claims, axes, tune):
            row = {"experiment": name, **verdict_row(v)}
            if was:
                old = logged.get(v.claim.id)
                edited = old is not None and old != v.claim.canonical_text()
                note = EDITED if edited else "" if old else "not in the grid the runs were made under"
                row.update(preregistered="false" if edited or old is None else "true", preregistration=note,
                           original_text=old if edited else "")
            rows.append(row)
    return adjust_rows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_csv", type=Path)
    parser.add_argument("verdicts_csv", type=Path)
    parser.add_argument("--was", default=None, help="git revision of the grids the runs were made under")
    args = parser.parse_args()
    before = pd.read_csv(args.verdicts_csv) if args.verdicts_csv.is_file() else pd.DataFrame(columns=["claim"])
    old = {r["claim"]: r for r in before.to_dict("records")}
    rows = rows_of(args.runs_csv, args.was)
    for r in rows:
        prev = old.get(r["claim"])
        if prev is not None and prev.get("stable") is not None and not (isinstance(prev.get("stable"), float)
                                                                         and math.isnan(prev["stable"])):
            r["stable"], r["budget_note"] = str(prev["stable"]).lower(), prev.get("budget_note") or ""
        was = (prev or {}).get("adjusted_verdict", "(new claim)")
        scope = (prev or {}).get("tests")
        moved = f" (was {scope})" if prev is not None and scope != r["tests"] else ""
        if was != r["adjusted_verdict"] or prev is None or moved:
            print(f"{r['experiment']}/{r['claim']}: {was} -> {r['adjusted_verdict']} [{r['family']}{moved}]: "
                  f"{r['reason']}")
    gone = sorted(set(old) - {r["claim"] for r in rows})
    for claim in gone:
        print(f"{old[claim]['experiment']}/{claim}: {old[claim]['adjusted_verdict']} -> (claim removed)")
    out = pd.DataFrame([{k: r.get(k) for k in VERDICT_COLUMNS} for r in rows], columns=VERDICT_COLUMNS)
    out.to_csv(args.verdicts_csv, index=False)


if __name__ == "__main__":
    main()
