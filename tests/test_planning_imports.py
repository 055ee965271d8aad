"""Planning a grid loads neither torch nor the training code: loading every shipped grid, its
`--dry-run` in every profile, and a rerun whose runs are all FINISHED (pre-flight, the store read,
the skips, the summary) each run in a fresh interpreter that ends without `torch` in sys.modules."""
import json
import subprocess
import sys

from grid_support import REPO, write_grid
from charrnn.grid.spec import load_grid
from charrnn.tags import IDENTITY_TAG, ROLE_TAG, RUN_ROLE
from charrnn.tracking.store import Tracker

TRAINING = ("torch", "charrnn.run.train", "charrnn.run.runner", "charrnn.grid.worker", "charrnn.capabilities")
SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "ablations").glob("*.yaml"))


def loaded_after(calls: list[list[str]]) -> dict:
    """Run `charrnn` with each argument list in one fresh interpreter; exit codes and which of
    TRAINING it loaded."""
    code = ("import json, sys, contextlib, io\nfrom charrnn.cli import main\ncodes = []\n"
            f"for args in {calls!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        codes.append(main(args))\n"
            f"print(json.dumps({{'codes': codes, 'loaded': [m for m in {TRAINING!r} if m in sys.modules]}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_check_sees_torch_when_a_run_trains(results_dir, tmp_path):
    found = loaded_after([["train", "steps=1", "hidden_size=8", "batch_size=2", "seq_len=8", "eval_batches=1",
                           "sample_length=4", "device=cpu"]])
    assert found["codes"] == [0] and "torch" in found["loaded"]


def test_loading_every_shipped_grid_and_its_dry_run_load_no_torch(results_dir):
    assert SHIPPED, "no shipped grid found"
    calls = [["grid", path, "--profile", profile, "--dry-run"]
             for path in SHIPPED for profile, _ in load_grid(REPO / path).profiles]
    assert loaded_after(calls) == {"codes": [0] * len(calls), "loaded": []}


def test_a_rerun_that_trains_nothing_loads_no_torch(results_dir, tmp_path):
    path = write_grid(tmp_path)
    grid = load_grid(path)
    tracker = Tracker()
    for spec in grid.expand("quick"):  # every RunSpec already FINISHED in the store
        tracker.start_run(grid.name, spec.run_name, params={}, tags={ROLE_TAG: RUN_ROLE, IDENTITY_TAG: spec.identity},
                          system_metrics=False).end("FINISHED")
    found = loaded_after([["grid", str(path), "--executor", "local", "--no-progress"]])
    assert found == {"codes": [0], "loaded": []}
    assert [r.status for r in tracker.runs(grid.name, {ROLE_TAG: RUN_ROLE})] == ["FINISHED"] * len(grid.expand("quick"))
