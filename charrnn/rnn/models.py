"""CharRNN: input encoding → stacked single-layer recurrent layers (optional residuals) → linear head.

Each layer comes from its backend's factory (`registry.BACKENDS[...].factory()`), so the state dict
of a model is the same on every backend and weights copy between them (`loop.load_state_dict(fused.state_dict())`).
Hidden state is (L, B, H), or a tuple (h, c) of (L, B, H) for lstm — the nn.* convention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charrnn import registry
from charrnn.config import ConfigError, TrainConfig
from charrnn.rnn.cell_math import Hidden, map_hidden

INIT_MODES = ("zero", "random", "learned")


class CharRNN(nn.Module):
    """Character-level language model described by a TrainConfig (validated by `make_config`)."""

    def __init__(self, cfg: TrainConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.layers
        self.has_cell_state = registry.CELLS[cfg.cell].has_cell_state
        H = cfg.hidden_size

        if cfg.input == "embedding":
            self.embedding: nn.Embedding | None = nn.Embedding(vocab_size, cfg.embed_size or H)
            input_size = self.embedding.embedding_dim
        else:
            self.embedding = None
            input_size = vocab_size
        widths = [input_size] + [H] * (cfg.layers - 1)  # input width of each layer
        # cfg was checked by make_config; `auto` outside training (sampling, a checkpoint) is the reference
        backend = registry.layer_backend(cfg.backend, cfg.cell, cfg.input_combine, cfg.activation)
        factory = registry.BACKENDS[backend].factory()
        self.layers = nn.ModuleList(
            factory(cfg.cell, width, H, cfg.input_combine, cfg.activation) for width in widths)
        self.residual_proj = nn.ModuleList(
            (nn.Linear(width, H, bias=False) if width != H else nn.Identity()) for width in widths
        ) if cfg.residual and cfg.residual_mode == "every_layer" else None
        # between_layers (write-up 001's skips): out_i = layer_i(out_{i-1}) + out_{i-1} for i >= 1 only
        self.skip_from = 1 if cfg.residual and cfg.residual_mode == "between_layers" else None
        self.head = nn.Linear(H, vocab_size)
        # a first layer that takes token ids projects them by table lookup (NativeRNNLayer.forward_tokens)
        self.tokens_to_first_layer = getattr(self.layers[0], "takes_tokens", False)
        if cfg.forget_bias and cfg.cell == "lstm":
            set_forget_bias(self.layers, cfg.forget_bias)

        if cfg.hidden_init == "learned":
            self.h0 = nn.Parameter(torch.zeros(cfg.layers, 1, H))      # (L, 1, H)
            if self.has_cell_state:
                self.c0 = nn.Parameter(torch.zeros(cfg.layers, 1, H))  # (L, 1, H)

    @property
    def has_learned_hidden(self) -> bool:
        return hasattr(self, "h0")

    def encode(self, x: Tensor) -> Tensor:
        """Token ids (B, T) → layer-0 input (B, T, E), or (B, T, V) one-hot."""
        if self.embedding is not None:
            return self.embedding(x)
        return F.one_hot(x, self.vocab_size).to(self.head.weight.dtype)

    def forward(self, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x: (B, T) int64 → (logits (B, T, V), hidden (L, B, H) or (h, c)).
        hidden=None starts from the learned h0 when the model has one, else from zeros."""
        if hidden is None:
            hidden = self.init_hidden(x.shape[0], "learned" if self.has_learned_hidden else "zero")
        by_tokens = self.tokens_to_first_layer and x.shape[1] > 0
        inp = None if by_tokens and self.residual_proj is None else self.encode(x)  # (B, T, E)
        finals = []
        for i, layer in enumerate(self.layers):
            h_in = map_hidden(lambda t: t[i:i + 1], hidden)                  # (1, B, H)
            if i == 0 and by_tokens:
                encoding = self.embedding.weight if self.embedding is not None else None
                out, h_i = layer.forward_tokens(x, encoding, h_in)           # (B, T, H)
            else:
                out, h_i = layer(inp, h_in)                                  # (B, T, H), (1, B, H)
            if self.residual_proj is not None:
                out = out + self.residual_proj[i](inp)
            elif self.skip_from is not None and i >= self.skip_from:
                out = out + inp                                              # (B, T, H)
            finals.append(h_i)
            inp = out
        return self.head(inp), _cat_layers(finals)                           # (B, T, V)

    def init_hidden(self, batch_size: int, mode: str = "zero",
                    generator: torch.Generator | None = None) -> Hidden:
        """Initial state for a batch: `zero`, `random` (N(0, 1) drawn on CPU from `generator`) or
        `learned` (the trained h0/c0 expanded over the batch). Returns (L, B, H) or (h, c)."""
        ref = self.head.weight
        shape = (self.num_layers, batch_size, self.hidden_size)
        if mode == "zero":
            states = [ref.new_zeros(shape) for _ in range(self._n_states)]
        elif mode == "random":
            states = [torch.randn(shape, generator=generator).to(ref.device, ref.dtype)
                      for _ in range(self._n_states)]
        elif mode == "learned":
            if not self.has_learned_hidden:
                raise ConfigError("hidden_init='learned': init_hidden(mode='learned') needs a model "
                                  "built with hidden_init=learned")
            learned = [self.h0, self.c0] if self.has_cell_state else [self.h0]
            states = [p.expand(shape).contiguous() for p in learned]
        else:
            raise ConfigError(f"mode={mode!r}: unknown hidden init; valid choices: {', '.join(INIT_MODES)}")
        return tuple(states) if self.has_cell_state else states[0]

    @property
    def _n_states(self) -> int:
        return 2 if self.has_cell_state else 1


def set_forget_bias(layers: nn.ModuleList, value: float) -> None:
    """LSTM gates are stacked (i, f, g, o) in nn.LSTM's layout: the forget gate's b_ih slice is set
    to `value` and its b_hh slice to 0, so the gate starts at sigmoid(value) (Jozefowicz et al. 2015)."""
    with torch.no_grad():
        for name, param in layers.named_parameters():
            leaf = name.rsplit(".", 1)[-1]                # bias_ih_l0 / bias_hh_l0, shape (4H,)
            if leaf.startswith(("bias_ih", "bias_hh")):
                H = param.shape[0] // 4
                param[H:2 * H] = value if leaf.startswith("bias_ih") else 0.0


def _cat_layers(finals: list[Hidden]) -> Hidden:
    """Per-layer states [(1, B, H), ...] → (L, B, H), keeping the (h, c) structure."""
    if isinstance(finals[0], tuple):
        return tuple(torch.cat(parts, dim=0) for parts in zip(*finals))
    return torch.cat(finals, dim=0)


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph between batches (truncated BPTT); works for a tensor and an (h, c) tuple."""
    return map_hidden(Tensor.detach, hidden)


def masked_cross_entropy(logits: Tensor, batch) -> Tensor:
    """The training loss: mean cross-entropy (nats/char) over positions where batch.mask is True;
    `batch` is a `tasks.Batch` (y, mask: (B, T)), logits (B, T, V)."""
    losses = F.cross_entropy(logits.flatten(0, 1).float(), batch.y.flatten(), reduction="none")  # (B*T,)
    mask = batch.mask.flatten().to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)


def param_count(model: nn.Module) -> int:
    """Number of scalar parameters (all trainable here), learned initial states included."""
    return sum(p.numel() for p in model.parameters())
