"""Hostile grid files and CLI values, through the CLI in a subprocess: each is refused with exit 2 and
one line naming what is wrong, before any run (no store is created), without expanding what it holds."""
import subprocess
import sys

import pytest
import yaml

from grid_support import REPO, grid_data, run_charrnn

# nine levels of nine aliases each, 9**9 strings once expanded (gigabytes once printed)
ALIAS_BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
              + "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                        for p, c in zip("abcdefgh", "bcdefghi")))
PEAK_RSS_BOUND_KB = 300 * 1024


def grid_text(**overrides) -> str:
    return yaml.safe_dump(grid_data(**overrides), sort_keys=False, width=10**9)


def long_question() -> str:
    return grid_text(question="Does it? " + "x" * 20_001)


def huge_hidden() -> str:
    data = grid_data()
    data["axes"]["hidden_size"] = [8, 1_000_000]
    return yaml.safe_dump(data, sort_keys=False)


HOSTILE = {
    "duplicate_top_key": (lambda: grid_text() + "task: names\n", "task: duplicate key at lines 11 and 34"),
    "duplicate_nested_key": (lambda: grid_text().replace("fixed:\n", "fixed:\n  lr: 0.01\n  lr: 0.5\n"),
                             "fixed.lr: duplicate key at lines 13 and 14"),
    "inf_float": (lambda: grid_text().replace("fixed:\n", "fixed:\n  lr: .inf\n"),
                  "fixed.lr: .inf at line 13: not a finite number"),
    "inf_in_an_axis": (lambda: grid_text().replace("axes:\n", "axes:\n  lr: [0.01, -.inf]\n"),
                       "axes.lr[1]: -.inf at line 21: not a finite number"),
    "over_long_text": (long_question, "question: a text of 20010 characters at line 2; valid: at most 2000"),
    "over_long_claim_text": (lambda: grid_text(claims=[{**grid_data()["claims"][0], "source": "y" * 20_001}]),
                             "claims[0].source: a text of 20001 characters at line 4; valid: at most 2000"),
    "100000_seeds": (lambda: grid_text(seeds=list(range(100_000))), "seeds: 100000 seeds; valid: at most 1000"),
    "too_many_runs": (lambda: grid_text(seeds=list(range(1000)), axes={"cell": ["vanilla", "gru", "lstm"],
                                                                           "hidden_size": list(range(8, 12))}),
                      "profile quick: 12000 runs (12 variant(s) x 1 tuned combination(s) x 1000 seed(s)); "
                      "valid: at most 10000 runs per profile"),
    "hidden_1e6": (huge_hidden, "axes: hidden_size=1000000: out of range; valid: an integer in 1..16384"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_grid_is_refused_in_one_line_before_any_run(case, results_dir, tmp_path):
    make_text, needle = HOSTILE[case]
    path = tmp_path / "hostile.yaml"
    path.write_text(make_text())
    proc = run_charrnn("grid", str(path), "--executor", "local")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charrnn: error: {path}: {needle}"), proc.stderr
    assert not results_dir.exists()


def peak_rss_kb(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """`charrnn ARGS` in a subprocess, and its own peak resident memory in kB (VmHWM: its own address
    space's, unlike ru_maxrss, which keeps the forking test process's peak across exec)."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['charrnn', *{list(args)!r}]\n"
            "try:\n    runpy.run_module('charrnn', run_name='__main__')\n"
            "finally:\n    hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
            "    print(hwm.split()[1], file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stderr.strip().splitlines()
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, "\n".join(lines[:-1])), int(lines[-1])


@pytest.mark.slow
def test_an_alias_bomb_is_refused_in_one_line_without_being_expanded(results_dir, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB + grid_text().replace("name: tiny", "name: *i"))
    proc, rss_kb = peak_rss_kb("grid", str(path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"charrnn: error: {path}: alias *a at line 2: aliases are not allowed; "
                                        "valid: write the value out"]
    assert rss_kb < PEAK_RSS_BOUND_KB and not results_dir.exists()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_train_refuses_a_non_finite_learning_rate_in_one_line(value, results_dir):
    proc = run_charrnn("train", f"lr={value}", "steps=1", "device=cpu")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "lr=" in proc.stderr
    assert "not a finite number; valid: a number > 0" in proc.stderr and not results_dir.exists()
