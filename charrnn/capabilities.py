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

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from charrnn import registry
from charrnn.config import ConfigError, TrainConfig, check_backend_device
from charrnn.paths import results_dir
from charrnn.rnn import model_probe
from charrnn.rnn.cells import compile_fn, fused_module
from charrnn.rnn.model_probe import WHOLE_MODEL
from charrnn.tasks.data import Batch, Task, make_task

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
    """Can backends `loop_native` and `min_native` build (first use) or load their C++ kernels here? It
    needs a C++ compiler on PATH; the build itself is tried once per process (`native_rnn.ops`)."""
    from charrnn.rnn import native_rnn

    if cxx_compiler() is None:
        return Support(False, "no C++ compiler (c++ or g++) on PATH to build its kernels")
    try:
        native_rnn.ops()
    except native_rnn.NativeBuildError as exc:
        return Support(False, f"its C++ kernels did not build ({exc})")
    return Support(True)


def build_support(backend: str) -> Support:
    """Can this machine build `backend` (its registry entry's `support` check; ok when it names none)?"""
    check = registry.BACKENDS[backend].support if backend in registry.BACKENDS else ""
    return registry.load(check)() if check else Support(True)


def check_device_support(cfg: TrainConfig, device_type: str) -> None:
    """`dtype=bf16` that this device cannot run, or a backend whose kernels cannot be built here
    (`loop_native` without a compiler), is bad input. (torch.compile is not probed here: the probe
    costs 20-60 s of inductor warm-up on a 2-core CPU; a compiled backend that cannot compile ends
    its run FAILED with the compiler's error.)"""
    support = build_support(cfg.backend)
    if not support.ok:
        usable = [b for b in registry.backends_for(cfg.cell) if b != cfg.backend and not registry.BACKENDS[b].support]
        raise ConfigError(f"backend={cfg.backend!r}: {support.reason}; valid here: any other backend "
                          f"(for cell={cfg.cell}: {', '.join(usable)})")
    if cfg.dtype == "bf16":   # auto: its reference must run (it is what the candidates are checked against)
        backend = registry.layer_backend(cfg.backend, cfg.cell, cfg.input_combine, cfg.activation)
        kernel = bf16_kernel(cfg.cell, backend)
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


# --------------------------------------------------------------------------- backend: auto
#
# `backend: auto` trains on the fastest backend that passed equivalence with the reference for the
# config's model (cell, layers, input encoding, vocabulary, residuals), device, dtype and batch shape
# on this machine. A probe builds the run's CharRNN on each candidate backend with the reference's
# weights (`rnn.model_probe`), checks its logits and parameter gradients on the run's first training
# batch against the reference, then times the whole model's training forward + backward (token
# lookup, layers, head, loss) in alternation with the reference (load drift hits both). A candidate
# wins only when its best time beats the reference's best by AUTO_MARGIN: under noise the choice
# stays the reference, and the same machine gives the same choice. Results are cached per machine
# (CPU model, GPU, torch) in results/backend_probe.json, so a grid probes each model once and its
# workers read the choice. (The optimiser step, the same on every backend, is not timed; on CUDA the
# trainer may capture a fused model's step as a graph, which the eager probe does not.)

AUTO_MARGIN = 0.15                  # a candidate must take <= 85 % of the reference's time
PROBE_ROUNDS = 5                    # timed paired rounds per candidate, after one warm-up round
MIN_ROUNDS = 2                      # ... or fewer, down to this, once the probe has run PROBE_BUDGET_S
PROBE_BUDGET_S = 8.0
OUT_OF_REACH = 1.0                  # ... or once a candidate's best round, after MIN_ROUNDS, is no faster than
                                    # the reference's best: winning would need 15 % more off its best time
PROBE_CACHE = "backend_probe.json"


@dataclass(frozen=True)
class Choice:
    backend: str
    ratios: dict[str, float]        # candidate → its fastest round / the reference's (1.0: the reference)
    rejected: dict[str, str]        # candidate → why it was not timed (cannot run, not equivalent)
    timed: str = WHOLE_MODEL        # what the ratios time: the whole model's training forward + backward


@dataclass(frozen=True)
class Workload:
    """What the probe trains: the run's vocabulary size and its first training batch (ids, shape, mask)."""
    vocab_size: int
    batch: Batch


def workload(cfg: TrainConfig, task: Task | None = None) -> Workload:
    """The probe's workload for `cfg`, from `task` (the run's, built from cfg when None)."""
    task = task if task is not None else make_task(cfg)
    with torch.random.fork_rng(devices=[]):
        batch = task.train_batch(0, cfg.batch_size, cfg.seq_len, cfg.seed, cfg.hidden_init.startswith("epoch_"))
    return Workload(task.vocab.size, batch)


def probe_key(cfg: TrainConfig, device_type: str, work: Workload) -> str:
    """What decides the choice: cell (and vanilla options), device, dtype, H, B, T (the batch's: a
    sequence task's own length), the model around the layers: vocabulary, input encoding, layers,
    residuals, and on a CPU torch's threads now (a run packed beside another trains on 1 of 2 cores,
    one alone on both, and kernels scale differently: the probe times at the run's own threads)."""
    options = f"{cfg.input_combine}-{cfg.activation}" if cfg.cell == "vanilla" else ""
    B, T = work.batch.x.shape
    encoding = "onehot" if cfg.input == "onehot" else f"e{cfg.embed_size or cfg.hidden_size}"
    residual = f"-{cfg.residual_mode}" if cfg.residual else ""
    threads = f"threads{torch.get_num_threads()}" if device_type == "cpu" else ""
    return "/".join(filter(None, [cfg.cell, options, device_type, cfg.dtype, f"h{cfg.hidden_size}b{B}t{T}",
                                  f"v{work.vocab_size}{encoding}l{cfg.layers}{residual}", threads]))


def machine_key(device_type: str) -> str:
    """This machine as far as kernel speed goes: CPU model, GPU name, torch version."""
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
               platform.processor() or platform.machine())
    gpu = torch.cuda.get_device_name(0) if device_type == "cuda" else ""
    return " | ".join(filter(None, [cpu, gpu, f"torch {torch.__version__}"]))


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def candidates(cfg: TrainConfig, device_type: str) -> list[str]:
    """The backends `auto` may pick for `cfg` on this device, the reference first."""
    reference = registry.reference(cfg.cell, cfg.input_combine, cfg.activation)
    others = [b for b in registry.auto_candidates(cfg.cell) if b != reference
              and not registry.BACKENDS[b].device_restriction(device_type)
              and not (registry.BACKENDS[b].fused and not registry.BACKENDS[reference].fused)]
    return [reference] + others


def _autocast(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bf16" else nullcontext()


def best_ratio(pairs: list[tuple[float, float]]) -> float:
    """The candidate's fastest round over the reference's fastest. Fastest against fastest: other
    processes only ever add time, so the minimum is the estimate least moved by load (a median of
    paired ratios swung 0.5-3x on a loaded 2-core CPU)."""
    return min(mine for mine, _ in pairs) / min(ref for _, ref in pairs)


def _paired_rounds(model: nn.Module, reference: nn.Module, batch: Batch, autocast, device: torch.device,
                   deadline: float) -> list[tuple[float, float]]:
    """(candidate s, reference s) per round, alternating, after one untimed warm-up of each; after
    MIN_ROUNDS, fewer than PROBE_ROUNDS once past the deadline or once the candidate is out of reach."""
    pairs: list[tuple[float, float]] = []
    for round_ in range(PROBE_ROUNDS + 1):
        pairs.append((model_probe.timed(model, batch, autocast, device),
                      model_probe.timed(reference, batch, autocast, device)))
        if round_ >= MIN_ROUNDS and (time.monotonic() > deadline or best_ratio(pairs[1:]) >= OUT_OF_REACH):
            break
    return pairs[1:]


def probe(cfg: TrainConfig, device_type: str, work: Workload) -> Choice:
    """Check and time every candidate's whole model against the reference's on `work`; never raises
    for a candidate that cannot run (it is rejected with the reason). Leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):   # models are built on the CPU: its RNG is all they draw
        torch.manual_seed(0)
        return _probe(cfg, torch.device(device_type), work)


def _batch_to(batch: Batch, device: torch.device) -> Batch:
    return Batch(*(t.to(device) for t in (batch.x, batch.y, batch.mask)))


def _probe(cfg: TrainConfig, device: torch.device, work: Workload) -> Choice:
    deadline = time.monotonic() + PROBE_BUDGET_S
    names = candidates(cfg, device.type)
    autocast, batch = _autocast(cfg, device), _batch_to(work.batch, device)
    reference = model_probe.build(names[0], cfg, work.vocab_size, device)
    with model_probe.tf32_off():
        want = model_probe.forward_backward(reference, batch, autocast)
    state = reference.state_dict()
    ratios, rejected = {names[0]: 1.0}, {}
    for name in names[1:]:
        try:
            model = model_probe.build(name, cfg, work.vocab_size, device, state)
            with model_probe.tf32_off():
                got = model_probe.forward_backward(model, batch, autocast)
            why = model_probe.equivalence_error(got, want, registry.BACKENDS[name].tolerance(cfg.dtype))
            if why:
                rejected[name] = f"not equivalent to {names[0]}: {why}"
                continue
            pairs = _paired_rounds(model, reference, batch, autocast, device, deadline)
        except Exception as exc:   # no compiler, no kernel for this dtype: it cannot be chosen
            rejected[name] = _first_line(exc)
            continue
        ratios[name] = best_ratio(pairs)
    best = min(ratios, key=ratios.get)
    return Choice(best if ratios[best] <= 1 - AUTO_MARGIN else names[0], ratios, rejected)


# The cache is data, not trust: each entry is checked against this schema and the registry before
# use; whatever fails is probed again, with one line on stderr saying why.
CACHE_SCHEMA = {
    "type": "object",
    "additionalProperties": {                                  # machine_key → its entries
        "type": "object",
        "additionalProperties": {                              # probe_key → the Choice made there
            "type": "object",
            "required": ["backend", "ratios", "rejected", "timed"],
            "additionalProperties": False,
            "properties": {
                "backend": {"type": "string"},
                # an entry of the one-layer probe (before the whole-model one) has no `timed`: probed again
                "timed": {"const": WHOLE_MODEL},
                "ratios": {"type": "object", "additionalProperties": {"type": "number"}},
                "rejected": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}


def read_cache(path: Path) -> tuple[dict, str]:
    """The cache's entries, and why it was unusable ("" when it was fine or missing): a file that
    does not parse or does not fit CACHE_SCHEMA counts as empty."""
    import jsonschema

    if not path.exists():
        return {}, ""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validate(entries, CACHE_SCHEMA)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"unreadable ({_first_line(exc)})"
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        return {}, f"does not fit its schema at {where} ({exc.message[:120]})"
    return entries, ""


def cached_choice_problem(found: dict, cfg: TrainConfig, device_type: str) -> str:
    """Why a cached entry cannot stand for `cfg` here ("" when it can): a backend the registry lacks,
    one that does not run the config or this device, or one its own `rejected` list rejects."""
    name = found["backend"]
    if name not in registry.BACKENDS:
        return f"no such backend; valid: {', '.join(registry.BACKENDS)}"
    if name not in candidates(cfg, device_type):
        return f"not a candidate for this config on {device_type}; valid: {', '.join(candidates(cfg, device_type))}"
    if name in found["rejected"]:
        return f"rejected by its own entry ({found['rejected'][name][:120]})"
    return ""


_checked: dict[tuple[str, str, str], str] = {}   # (machine, probe key, backend) → why not equivalent ("" ok)


def equivalence_problem(cfg: TrainConfig, device_type: str, name: str, work: Workload) -> str:
    """One small training forward + backward of cfg's model on backend `name`, on its reference's
    weights, once per process and key: "" when logits and gradients match within its tolerance, else why not."""
    key = (machine_key(device_type), probe_key(cfg, device_type, work), name)
    if key not in _checked:
        _checked[key] = _check_equivalence(cfg, torch.device(device_type), name, work)
    return _checked[key]


def _check_equivalence(cfg: TrainConfig, device: torch.device, name: str, work: Workload) -> str:
    reference = registry.reference(cfg.cell, cfg.input_combine, cfg.activation)
    if name == reference:
        return ""
    small = Batch(*(t[:4, :16].to(device) for t in (work.batch.x, work.batch.y, work.batch.mask)))  # (<=4, <=16)
    autocast = _autocast(cfg, device)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            ref = model_probe.build(reference, cfg, work.vocab_size, device)
            model = model_probe.build(name, cfg, work.vocab_size, device, ref.state_dict())
        with model_probe.tf32_off():
            want = model_probe.forward_backward(ref, small, autocast)
            got = model_probe.forward_backward(model, small, autocast)
    except Exception as exc:
        return _first_line(exc)
    why = model_probe.equivalence_error(got, want, registry.BACKENDS[name].tolerance(cfg.dtype))
    return f"not equivalent to {reference}: {why}" if why else ""


def _say(message: str) -> None:
    print(f"charrnn: {message}", file=sys.stderr, flush=True)


def resolve_backend(cfg: TrainConfig, device_type: str, task: Task | None = None) -> Choice:
    """The backend `auto` means for `cfg` here: the cached choice once it has passed its checks
    (schema, registry, its own entry, and equivalence with the reference on the reference's
    weights), else a fresh probe (cached). `task`: the run's (built from cfg when None). A concrete
    backend is returned as it is."""
    if cfg.backend != registry.AUTO:
        return Choice(cfg.backend, {}, {})
    work = workload(cfg, task)
    cache = results_dir() / PROBE_CACHE
    machine, key = machine_key(device_type), probe_key(cfg, device_type, work)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):   # one probe per key, even with workers starting together
        entries, unusable = read_cache(cache)
        if unusable:
            _say(f"{cache}: {unusable}; probing again")
        found = entries.get(machine, {}).get(key)
        if found is not None:
            problem = cached_choice_problem(found, cfg, device_type) \
                or equivalence_problem(cfg, device_type, found["backend"], work)
            if not problem:
                return Choice(**found)
            _say(f"{cache}: entry {key!r} names backend {found['backend']!r}: {problem}; probing again")
        choice = probe(cfg, device_type, work)
        _checked[(machine, key, choice.backend)] = ""   # the probe checked it on the reference's weights
        entries.setdefault(machine, {})[key] = dataclasses.asdict(choice)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(tmp, cache)
    return choice
