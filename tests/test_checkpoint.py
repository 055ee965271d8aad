"""Self-describing checkpoints: a `.pt` rebuilds its model, vocabulary and prime with no store."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charrnn.run.checkpoint import read, rebuild
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


def test_a_checkpoint_of_another_format_is_refused_in_one_line(tmp_path, empty_store, capsys):
    trainer, path = trained_checkpoint(tmp_path)
    torch.save({key: value for key, value in torch.load(path, weights_only=True).items() if key != "format"}, path)
    assert main(["sample", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "format 1" in err and "charrnn migrate" in err and len(err.splitlines()) == 1


def test_missing_checkpoint_file_exits_2(tmp_path, empty_store, capsys):
    assert main(["sample", str(tmp_path / "nope.pt")]) == 2
    assert "no such file" in capsys.readouterr().err
