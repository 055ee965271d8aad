"""Self-describing checkpoints: a `.pt` rebuilds its model, vocabulary and prime with no store."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

import charrnn.run.train
from charrnn.run.checkpoint import DESCRIPTION_KEYS, read, rebuild
from charrnn.cli import main
from charrnn.config import make_config
from charrnn.run.sample import generate
from charrnn.run.train import Trainer

TINY = {"hidden_size": 16, "batch_size": 4, "seq_len": 16, "eval_batches": 2, "device": "cpu",
        "steps": 3, "eval_interval": 3}
REPO = Path(__file__).resolve().parent.parent


def trained_checkpoint(tmp_path, **overrides) -> tuple[Trainer, Path]:
    trainer = Trainer(make_config({**TINY, **overrides}), checkpoint_dir=tmp_path, progress=False)
    trainer.fit()
    return trainer, trainer.save_checkpoint()


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI at a store that holds nothing (and a results dir that does not exist)."""
    uri = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path / "no-results"))
    return uri


@pytest.mark.parametrize("task, cell", [("tinyshakespeare", "gru"), ("names", "lstm"),
                                        ("arithmetic", "vanilla")])
def test_rebuilt_model_computes_what_the_trained_model_computes(tmp_path, task, cell):
    trainer, path = trained_checkpoint(tmp_path, task=task, cell=cell)
    model, vocab, prime = rebuild(read(path))
    assert vocab == trainer.task.vocab and prime == trainer.task.sample_prime()
    x = trainer.val[0].x  # (B, T)
    trainer.model.eval()
    expected, _ = trainer.model(x, None)
    actual, _ = model(x, None)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_sample_from_checkpoint_file_needs_no_store(tmp_path, empty_store, capsys):
    trainer, path = trained_checkpoint(tmp_path / "ckpt", task="names", cell="gru")
    assert main(["sample", str(path), "--length", "200", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert text.rstrip("\n") == generate(trainer.model, trainer.task.vocab, "", 200, 0.8, seed=3)
    assert not (tmp_path / "empty").exists() and not (tmp_path / "no-results").exists()


@pytest.mark.slow
def test_console_sample_of_a_checkpoint_prints_200_characters_with_an_empty_store(tmp_path, empty_store):
    _, path = trained_checkpoint(tmp_path / "ckpt")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", str(path), "--length", "200"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.rstrip("\n")) >= 200  # the prime ("\n") and 200 sampled characters


def strip_description(path: Path) -> None:
    """Rewrite `path` as a checkpoint written before format 2."""
    state = torch.load(path, weights_only=True)
    for key in (*DESCRIPTION_KEYS, "format"):
        state.pop(key)
    torch.save(state, path)


def test_old_checkpoint_still_resumes_but_its_file_alone_cannot_be_sampled(tmp_path, empty_store, capsys):
    trainer, path = trained_checkpoint(tmp_path)
    strip_description(path)
    resumed = Trainer(trainer.cfg, progress=False)
    resumed.load_checkpoint(path)
    assert resumed.step == trainer.step
    assert main(["sample", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "sample it by run id" in err and len(err.splitlines()) == 1


def test_missing_checkpoint_file_exits_2(tmp_path, empty_store, capsys):
    assert main(["sample", str(tmp_path / "nope.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_run_with_an_old_checkpoint_samples_from_its_params(results_dir, monkeypatch, capsys):
    monkeypatch.setattr(charrnn.run.train, "describe", lambda *args: {})  # writes format-1 checkpoints
    assert main(["train", *[f"{k}={v}" for k, v in TINY.items()], "--no-progress"]) == 0
    run_id = capsys.readouterr().out.split("run_id: ")[1].split()[0]
    client = MlflowClient(f"sqlite:///{results_dir / 'mlflow.db'}")
    stored = read(client.download_artifacts(run_id, "checkpoint/checkpoint.pt", str(results_dir)))
    assert not any(key in stored for key in DESCRIPTION_KEYS)
    assert main(["sample", run_id, "--length", "30", "--prime", "KING"]) == 0
    assert capsys.readouterr().out.startswith("KING")
