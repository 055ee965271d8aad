"""Every backend of every cell, layer-level (fwd, fwd_bwd) and whole train step, timed against
`fused` after an equivalence check. Cases come from the profile (see conftest.py)."""
import pytest

from charrnn.bench.workloads import device_timer

JIT_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"  # inductor import
pytestmark = [pytest.mark.benchmark(timer=device_timer), pytest.mark.filterwarnings(JIT_WARNING)]


def test_layer(run_case, case):
    run_case(case)


def test_train_step(run_case, train_case):
    """Embedding + RNN + head + cross-entropy + backward + Adam, what a grid run feels."""
    run_case(train_case)
