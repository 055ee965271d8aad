"""The one door to torch's private oneDNN ops: a linear with its weight packed once.

torch has no public packed-weight linear. `torch.ops.mkldnn._reorder_linear_weight` and
`_linear_pointwise` are the CPU ops inductor itself emits for this; charrnn calls them here and,
for the step matmuls of `loop_native`, in its C++ (`StepMatmul` in csrc/rnn_steps.cpp, through the
dispatcher), checked against torch TORCH_CHECKED (tests/test_onednn.py fails on another torch, so a
torch upgrade re-checks them; tests/test_native_rnn.py checks the C++ side's numbers).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

TORCH_CHECKED = "2.13.0"
AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def packed_linear(weight: Tensor, bias: Tensor | None, rows: int) -> Callable[..., Tensor] | None:
    """linear(x (rows, K), add=None) → x weight^T + bias (+ add) through oneDNN, `weight` (N, K)
    packed once for `rows`-row inputs; None where oneDNN cannot (not an fp32 CPU weight, no oneDNN)."""
    if not (AVAILABLE and weight.device.type == "cpu" and weight.dtype == torch.float32):
        return None
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

    def linear(x: Tensor, add: Tensor | None = None) -> Tensor:
        if add is None:
            return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, add, packed, bias, "add")
    return linear
