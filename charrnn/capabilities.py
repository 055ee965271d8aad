"""What this machine's PyTorch can run, found by trying it once per process (never by CPU flags).

- bf16: a tiny forward + backward under `torch.autocast(bfloat16)` of the kernel a config would
  use — the fused `nn.RNN`/`nn.GRU`/`nn.LSTM` of its cell (on x86 CPUs that is oneDNN, which on a
  CPU without AVX-512 cannot build a bf16 LSTM primitive), or a matmul for the loop backends.
- compile: `torch.compile` of a tiny function, the way `cells.compile_fn` compiles (it needs a
  working C++ toolchain for inductor on CPU); the tests of compiled backends skip on its reason.

`check_device` is the one device check before a run exists (CLI, grid preflight, trainer): it
resolves `device=auto` and turns a backend the device cannot run, or an unsupported `dtype=bf16`,
into bad input (`ConfigError`: one line, exit 2, no run). `CHARRNN_FORCE_NO_BF16=1` makes the bf16 probe report
"unsupported" on any machine, to exercise that path. Probes leave the global RNG state untouched.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from charrnn import registry
from charrnn.config import ConfigError, TrainConfig, check_backend_device
from charrnn.rnn.cells import compile_fn, fused_module

FORCE_NO_BF16 = "CHARRNN_FORCE_NO_BF16"
MATMUL = "matmul"   # the kernel the loop backends' cells are made of


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""    # why not, in one line (empty when ok)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip().rstrip(":")


def bf16_kernel(cell: str, backend: str) -> str:
    """The kernel whose bf16 support decides a config: the fused cell module, or a matmul."""
    return cell if registry.BACKENDS[backend].fused else MATMUL


def _bf16_step(kernel: str, device: torch.device) -> None:
    """Forward + backward of a tiny `kernel` under bf16 autocast; raises where it cannot run."""
    x = torch.randn(3, 5, 4, device=device, requires_grad=True)             # (B, T, I)
    if kernel == MATMUL:
        module: nn.Module = nn.Linear(4, 8).to(device)
    else:
        module = fused_module(kernel)(4, 8, num_layers=2, batch_first=True).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out                      # (B, T, 8)
    out.float().square().sum().backward()
    if not torch.isfinite(x.grad).all():
        raise RuntimeError("non-finite gradient from a finite input")


@lru_cache(maxsize=None)
def _probe_bf16(kernel: str, device_type: str) -> Support:
    try:
        with torch.random.fork_rng(devices=[]):
            _bf16_step(kernel, torch.device(device_type))
    except Exception as exc:  # oneDNN, an unsupported dtype, a missing kernel: all mean "no"
        return Support(False, _first_line(exc))
    return Support(True)


def bf16_support(kernel: str, device_type: str = "cpu") -> Support:
    """Can `kernel` (a cell name for the fused module, or `matmul`) run bf16 autocast here?"""
    if os.environ.get(FORCE_NO_BF16, "") not in ("", "0"):
        return Support(False, f"forced off by {FORCE_NO_BF16}=1")
    return _probe_bf16(kernel, device_type)


def cxx_compiler() -> str | None:
    """The C++ compiler on PATH that inductor and `torch.utils.cpp_extension` would call, or None."""
    return shutil.which("c++") or shutil.which("g++")


@lru_cache(maxsize=None)
def compile_support() -> Support:
    """Can `torch.compile` (inductor, as `cells.compile_fn` calls it) compile and run on CPU?"""
    try:
        fn = compile_fn(lambda t: torch.tanh(t) * 2 + 1)
        x = torch.linspace(-1, 1, 8)
        if not torch.allclose(fn(x), torch.tanh(x) * 2 + 1):
            return Support(False, "compiled result differs from eager")
    except Exception as exc:
        return Support(False, _first_line(exc))
    return Support(True)


@lru_cache(maxsize=None)
def native_support() -> Support:
    """Can backend `loop_native` build (first use) or load its C++ kernels here? It needs a C++
    compiler on PATH; the build itself is tried once per process (`native_rnn.ops`)."""
    from charrnn.rnn import native_rnn

    if cxx_compiler() is None:
        return Support(False, "no C++ compiler (c++ or g++) on PATH to build its kernels")
    try:
        native_rnn.ops()
    except native_rnn.NativeBuildError as exc:
        return Support(False, f"its C++ kernels did not build ({exc})")
    return Support(True)


def check_device_support(cfg: TrainConfig, device_type: str) -> None:
    """`dtype=bf16` that this device cannot run, or `backend=loop_native` whose kernels cannot be
    built here, is bad input. (torch.compile is not probed here: the probe costs 20-60 s of inductor
    warm-up on a 2-core CPU; a compiled backend that cannot compile ends its run FAILED with the
    compiler's error.)"""
    if cfg.backend == "loop_native":
        support = native_support()
        if not support.ok:
            raise ConfigError(f"backend={cfg.backend!r}: {support.reason}; valid here: any other backend "
                              f"(e.g. loop_bptt, the same recurrence in Python)")
    if cfg.dtype == "bf16":
        kernel = bf16_kernel(cfg.cell, cfg.backend)
        support = bf16_support(kernel, device_type)
        if not support.ok:
            what = f"a bf16 {cfg.cell} (backend={cfg.backend})" if kernel != MATMUL else "bf16 matmuls"
            raise ConfigError(f"dtype={cfg.dtype!r}: this {device_type} cannot run {what} under autocast "
                              f"({support.reason}); valid here: fp32")


def resolve_device(name: str) -> torch.device:
    """auto → cuda, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(cfg: TrainConfig) -> torch.device:
    """The device `cfg` trains on, after checking this machine can run it there: its backend on
    that device (e.g. loop_cudagraph with device=auto resolving to cpu) and its dtype (bf16)."""
    device = resolve_device(cfg.device)
    check_backend_device(cfg.backend, device.type)
    check_device_support(cfg, device.type)
    return device
