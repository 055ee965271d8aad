"""The harness against a bare PyTorch loop (tests/reference_loop.py) on the same run."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reference_loop
from charrnn.run.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
MARGIN = 0.01   # nats/char: the equivalence margin of harness vs bare loop
BUDGET = reference_loop.Budget(hidden_size=32, batch_size=16, seq_len=32, steps=60, lr=1e-2)


def test_bare_loop_starts_from_the_harness_init():
    _, bare = reference_loop.build(BUDGET)
    harness = Trainer(BUDGET.config(), progress=False).model
    ours = [p.detach() for p in harness.parameters()]
    theirs = [p.detach() for p in bare.parameters()]
    assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_harness_and_bare_loop_agree_on_final_val_loss_within_the_margin():
    harness = Trainer(BUDGET.config(), progress=False).fit().final["final_val_loss"]
    bare = reference_loop.train(BUDGET)["final_val_loss"]
    assert abs(harness - bare) < MARGIN, (harness, bare)
    assert bare < math.log(65) - 1.0   # both learned something: the comparison is not of two untrained models


def test_reference_loop_runs_as_a_script():
    script = Path(reference_loop.__file__)
    out = subprocess.run([sys.executable, str(script), "--steps", "3", "--hidden-size", "8"],
                         capture_output=True, text=True, check=True, cwd=script.parent.parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.startswith("bare loop: final_val_loss=")
