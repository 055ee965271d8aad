"""`charrnn train` / `charrnn sample` end to end against an isolated MLflow store."""
import math
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from charrnn.cli import main
from charrnn.tracking.store import tracking_uri


def all_runs(results_dir):
    if not (results_dir / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri())
    experiments = client.search_experiments()
    return client.search_runs([e.experiment_id for e in experiments]) if experiments else []


@pytest.mark.parametrize("args, needle", [
    (["colour=red"], "unknown key 'colour'"),
    (["cell=transformer"], "cell='transformer'"),
    (["hidden_size=big"], "hidden_size='big'"),
    (["hidden_size=0"], "hidden_size=0"),
    (["dataset_fraction=0"], "dataset_fraction=0.0"),
    (["dataset_fraction=1.2"], "dataset_fraction=1.2"),
    (["task=text", "path=/no/such/file.txt"], "path='/no/such/file.txt'"),
    (["cell=vanilla", "input_combine=add", "backend=fused"], "input_combine='add'"),
])
def test_bad_input_exits_2_with_one_line_and_creates_no_run(results_dir, capsys, args, needle):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert all_runs(results_dir) == []


def test_cuda_only_backend_without_cuda_exits_2_before_the_store_exists(results_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert main(["train", "backend=loop_cudagraph", "steps=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "backend='loop_cudagraph': CUDA graphs need a CUDA device" in err and len(err.splitlines()) == 1
    assert not (results_dir / "mlflow.db").exists()


def test_non_utf8_text_file_is_rejected_before_any_run(results_dir, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    assert main(["train", "task=text", f"path={bad}", "steps=2"]) == 2
    assert "path=" in capsys.readouterr().err
    assert all_runs(results_dir) == []


@pytest.mark.slow
def test_train_logs_one_finished_run_with_params_metrics_and_artifacts(results_dir, capsys):
    code = main(["train", "task=tinyshakespeare", "cell=gru", "hidden_size=64", "steps=40",
                 "eval_interval=20", "eval_batches=2", "device=cpu", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    (run,) = all_runs(results_dir)
    assert f"run_id: {run.info.run_id}" in out and "final_val_loss" in out
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "gru-h64-l1-s0"
    assert run.data.params["hidden_size"] == "64" and int(run.data.params["param_count"]) > 0
    client = MlflowClient(tracking_uri())
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(losses) == 40
    assert abs(min(losses, key=lambda m: m.step).value - math.log(65)) < 0.15
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    for key in ("final_val_loss", "final_train_loss", "final_tokens_per_s", "tokens_per_s"):
        assert key in run.data.metrics
    assert run.data.tags["charrnn.identity"]
    assert run.data.tags["charrnn.device"] == "cpu"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"samples", "predictions.json", "checkpoint", "provenance"} <= artifacts
    provenance = {a.path for a in client.list_artifacts(run.info.run_id, "provenance")}
    assert provenance == {"provenance/git_diff.patch", "provenance/pip_freeze.txt"}

    assert main(["sample", run.info.run_id, "--length", "50", "--prime", "ROMEO:"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("ROMEO:") and len(sample.rstrip("\n")) >= 50


def test_diverging_run_ends_failed_with_reason_and_exit_1(results_dir, capsys):
    code = main(["train", "cell=vanilla", "backend=loop", "activation=identity", "optimizer=sgd",
                 "lr=1e6", "grad_clip=0", "steps=50", "hidden_size=16", "device=cpu", "--no-progress"])
    assert code == 1
    (run,) = all_runs(results_dir)
    assert run.info.status == "FAILED"
    assert run.data.tags["charrnn.failure"].startswith("diverged at step ")


def test_sample_of_unknown_run_exits_2(results_dir, capsys):
    assert main(["sample", "0123456789abcdef"]) == 2
    assert "no such run" in capsys.readouterr().err


def test_console_script_reports_bad_key_with_exit_2(results_dir):
    proc = subprocess.run([sys.executable, "-m", "charrnn", "train", "colour=red"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("charrnn: error: unknown key 'colour'")
    assert not (results_dir / "mlflow.db").exists()


ESCAPING = ["../x", "../../escaped", "a/b", "/tmp/abs", ".hidden", ""]


@pytest.mark.parametrize("name", ESCAPING)
@pytest.mark.parametrize("verb", ["train", "sample", "report", "export"])
def test_names_that_leave_the_results_dir_exit_2_with_one_line_and_create_nothing(
        results_dir, tmp_path, monkeypatch, capsys, verb, name):
    monkeypatch.chdir(tmp_path)
    args = {"train": ["train", "--experiment", name, "steps=1"], "sample": ["sample", name],
            "report": ["report", name], "export": ["export", name]}[verb]
    before = sorted(tmp_path.parent.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{name!r}: valid: letters, digits" in err
    assert sorted(tmp_path.parent.rglob("*")) == before and not results_dir.exists()


def test_sample_of_a_run_id_without_a_store_creates_no_store(results_dir, capsys):
    assert main(["sample", "deadbeef"]) == 2
    err = capsys.readouterr().err.strip()
    assert "run_id='deadbeef': no such run" in err and len(err.splitlines()) == 1
    assert not results_dir.exists()


def test_sample_of_a_checkpoint_whose_weights_do_not_fit_its_config_exits_2(results_dir, tmp_path, capsys):
    from charrnn.config import make_config
    from charrnn.rnn.models import CharRNN
    from charrnn.run.checkpoint import describe
    from charrnn.tasks.data import make_task

    cfg = make_config({"hidden_size": 8, "device": "cpu"})
    vocab = make_task(cfg).vocab
    other = CharRNN(make_config({"hidden_size": 16, "device": "cpu"}), vocab.size)
    path = tmp_path / "mismatch.pt"
    torch.save({"model": other.state_dict(), **describe(cfg, vocab, "A")}, path)
    assert main(["sample", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"checkpoint={str(path)!r}: its weights do not fit its config (size mismatch for" in err
    assert not results_dir.exists()
