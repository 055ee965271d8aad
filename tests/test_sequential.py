"""Sequential seeding: planned looks, stopping, the alpha rule, bad input, kill -9 and resume."""
import numpy as np
import pandas as pd
import pytest

from charrnn import cli
from charrnn.grid.spec import load_grid
from charrnn.grid.sequential import judged_seeds, planned_looks, seeds_for, until_decided
from charrnn.tags import SEQUENTIAL_PREFIX
from claim_support import SCOPE
from grid_support import (children, empty_store_db, grid_data, kill_tree, parents, run_charrnn, runs_of,  # noqa: F401
                          start_charrnn, store, wait_for, write_grid)


@pytest.mark.parametrize("first,cap,looks", [(5, 10, [5, 10]), (5, 5, [5]), (5, 12, [5, 10, 12]), (3, 7, [3, 6, 7])])
def test_looks_are_planned_in_steps_of_the_profiles_seed_count(first, cap, looks):
    assert planned_looks(first, cap) == looks


def test_looks_draw_fresh_seeds_after_the_profiles():
    """The profile's seeds may already have been judged at the full alpha: no look reuses them."""
    assert seeds_for((0, 1, 2), 5) == (3, 4, 5, 6, 7) and seeds_for((3, 7), 2) == (8, 9)


def test_the_report_judges_the_seeds_the_looks_drew():
    assert judged_seeds({"first_seed": "3", "seeds_used": "4"}) == ("3", "4", "5", "6")
    assert judged_seeds(None) is None and judged_seeds({"look": "1"}) is None


def fake_runs(effect: float, noise: float):
    """runs_of(grid, seeds): a cell claim's arms; seed-level noise, a fixed true effect."""
    def runs_of_seeds(grid, seeds):
        rng = np.random.default_rng(0)
        noise_by_seed = {s: rng.normal(0, noise, 2) for s in range(max(seeds) + 1)}
        return pd.DataFrame([{"cell": cell, "hidden_size": 8, "seed": s, "status": "FINISHED",
                              "final_val_loss": 2.0 + (effect if cell == "gru" else 0) + noise_by_seed[s][i]}
                             for s in seeds for i, cell in enumerate(("vanilla", "gru"))])
    return runs_of_seeds


def test_stops_at_the_first_look_where_every_claim_is_decided(tmp_path):
    grid = load_grid(write_grid(tmp_path, axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1, 2]))
    trained = []
    outcome = until_decided(grid, "quick", 12, lambda g: trained.append(g.seeds_of("quick")),
                            fake_runs(-0.3, 0.05))
    assert outcome.looks_planned == 4 and outcome.look < 4
    assert trained[-1] == outcome.seeds and "decided at look" in outcome.stop_reason
    assert outcome.verdicts[0].label == "reproduced" and outcome.verdicts[0].alpha == pytest.approx(0.05 / 4)
    assert outcome.tags()[SEQUENTIAL_PREFIX + "seeds_used"] == str(len(outcome.seeds))


def test_stops_at_max_seeds_when_a_claim_stays_underpowered(tmp_path):
    grid = load_grid(write_grid(tmp_path, axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1, 2]))
    trained = []
    outcome = until_decided(grid, "quick", 6, lambda g: trained.append(g.seeds_of("quick")),
                            fake_runs(-0.02, 0.2))
    assert trained == [(3, 4, 5), (3, 4, 5, 6, 7, 8)]
    assert outcome.verdicts[0].label == "underpowered" and "--max-seeds 6 reached" in outcome.stop_reason


@pytest.mark.parametrize("extra,needle", [
    (["--max-seeds", "1"], "--max-seeds=1: below the 2 seeds of profile quick"),
    ([], "the grid has no claims to decide"),
])
def test_bad_sequential_requests_exit_2_before_any_run(tmp_path, results_dir, capsys, extra, needle):
    path = write_grid(tmp_path, claims=None) if not extra else write_grid(tmp_path)
    assert cli.main(["grid", str(path), "--until-decided", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and not results_dir.exists()


# train_loss has no trivial baseline, so these tiny runs are judged (not "did not learn") and a
# look with 2 seeds stays undecided: the grid goes on to its later look
SEQ_GRID = {"axes": {"cell": ["vanilla", "gru"]}, "seeds": [0, 1],
            # any budget will do (a source claim on a loss would require converged runs; these stop at their cap)
            "claims": [{"source": "test", **SCOPE, "requires": "any", "metric": "train_loss",
                        "expect": {"cell": "gru", "better_than": "vanilla"}}],
            "fixed": {"hidden_size": 8, "batch_size": 4, "seq_len": 16, "steps": 60, "eval_interval": 10,
                      "eval_batches": 1, "sample_length": 20, "device": "cpu"}}


@pytest.mark.slow
def test_kill_9_during_a_later_look_then_rerun_continues_and_tags_the_stop(store, tmp_path):
    path = write_grid(tmp_path, **SEQ_GRID)
    args = ("grid", str(path), "--until-decided", "--max-seeds", "4", "--no-progress")
    proc = start_charrnn(*args, log=tmp_path / "first.log")
    wait_for(lambda: any(r.name.endswith("seed=4") for r in children(runs_of("tiny", store))), timeout=300)
    kill_tree(proc)
    done = run_charrnn(*args, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_of("tiny", store)
    kids = children(runs)
    assert all(r.status == "FINISHED" for r in kids) and len(kids) == len({r.identity for r in kids})
    seeds = {r.params["seed"] for r in kids}
    assert seeds in ({"2", "3"}, {"2", "3", "4", "5"})   # fresh seeds after the profile's 0, 1
    last = max(parents(runs), key=lambda r: r.start_time)
    assert last.tags[SEQUENTIAL_PREFIX + "seeds_used"] == str(len(seeds))
    assert last.tags[SEQUENTIAL_PREFIX + "first_seed"] == "2"
    assert last.tags[SEQUENTIAL_PREFIX + "stop_reason"] and "sequential seeding:" in done.stdout
