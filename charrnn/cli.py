"""`charrnn` command line. Flags and key=value pairs are parsed here and nowhere else."""
from __future__ import annotations

import argparse
import sys
import tempfile

from .config import FIELDS, ConfigError, TrainConfig, make_config, parse_key_values

EXIT_BAD_INPUT = 2
SMOKE_OVERRIDES = {"task": "tinyshakespeare", "cell": "gru", "hidden_size": 64, "steps": 60,
                   "eval_interval": 20, "batch_size": 32, "seq_len": 64, "device": "cpu"}


class UsageError(Exception):
    """Bad command-line usage: printed as one line, exit code 2."""


def _print_outcome(outcome, uri: str) -> None:
    print(f"run_id: {outcome.run_id}")
    print(f"status: {outcome.status}")
    for key, value in sorted(outcome.final.items()):
        print(f"{key}: {value:.4f}")
    if outcome.failure:
        print(f"failure: {outcome.failure}")
    print(f"view it: make ui   (or: mlflow ui --backend-store-uri {uri})")


def _train(cfg: TrainConfig, experiment: str, progress: bool) -> int:
    from .runner import run_one
    from .tracking import Tracker

    tracker = Tracker()
    outcome = run_one(cfg, tracker, experiment=experiment, progress=progress)
    _print_outcome(outcome, tracker.uri)
    return 0 if outcome.status == "FINISHED" else 1


def cmd_train(args: argparse.Namespace) -> int:
    cfg = make_config(parse_key_values(args.overrides))
    return _train(cfg, args.experiment, not args.no_progress)


def cmd_smoke(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: a short CPU run on tiny-shakespeare."""
    return _train(make_config(SMOKE_OVERRIDES), "smoke", not args.no_progress)


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .data import make_task
    from .models import CharRNN
    from .sample import generate
    from .tracking import Tracker
    from .train import CHECKPOINT_NAME

    tracker = Tracker()
    try:
        run = tracker.get_run(args.run_id)
    except Exception:
        raise UsageError(f"run_id={args.run_id!r}: no such run in {tracker.uri}") from None
    params = {k: v for k, v in run.data.params.items() if k in FIELDS}
    cfg = make_config(params)
    task = make_task(cfg)
    model = CharRNN(cfg, task.vocab.size)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.download(args.run_id, f"checkpoint/{CHECKPOINT_NAME}", tmp)
        except Exception:
            raise UsageError(f"run_id={args.run_id!r}: run has no checkpoint artifact") from None
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    prime = task.sample_prime() if args.prime is None else args.prime
    print(generate(model, task.vocab, prime, args.length, args.temperature, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charrnn", description="RNN ablation and benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one run: charrnn train key=value ...",
                           description=f"Valid keys: {', '.join(FIELDS)}")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.add_argument("--experiment", default="train", help="MLflow experiment (default: train)")
    train.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")
    train.set_defaults(func=cmd_train)

    smoke = sub.add_parser("smoke", help="the main job on embedded defaults (CPU, about a minute)")
    smoke.add_argument("--no-progress", action="store_true")
    smoke.set_defaults(func=cmd_smoke)

    sample = sub.add_parser("sample", help="generate text from a finished run")
    sample.add_argument("run_id")
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--length", type=int, default=300)
    sample.add_argument("--prime", default=None, help="text to start from (default: the task's)")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"charrnn: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
