"""The `rnnkit` command: help, errors, train/info/plot/eval/sample, and exact resume after a real SIGKILL."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from toytask import losses, one_thread_fixture, recipe  # noqa: E402

from rnnkit.cli import main  # noqa: E402

_one_thread = one_thread_fixture()


def write_recipe(path, run_dir, *overrides):
    """The toy recipe with overrides applied, as a YAML file."""
    def plain(value):  # override texts (str subclasses) -> YAML values
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return yaml.safe_load(str(value)) if isinstance(value, str) else value

    path.write_text(yaml.safe_dump(plain(recipe(run_dir, *overrides))))
    return path


def rnnkit(*args, **kwargs):
    """Run `python -m rnnkit` in a fresh process that can import the toy task."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rnnkit", *args, "--import", "toytask"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_help_lists_commands_options_and_examples(capsys):
    with pytest.raises(SystemExit) as code:
        main(["--help"])
    out = capsys.readouterr().out
    assert code.value.code == 0
    for word in ("train", "eval", "sample", "plot", "info", "examples:", "rnnkit train configs/"):
        assert word in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for word in ("--resume", "--print-config", "--keys", "--import", "model.hidden_size=512", "resume=RUN_DIR",
                 "torchrun"):
        assert word in out, word
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "--checkpoint" in capsys.readouterr().out


def test_config_errors_exit_2_before_any_work(tmp_path, capsys):
    path = write_recipe(tmp_path / "r.yaml", tmp_path / "run")
    assert main(["train", str(path), "model.hiden_size=3"]) == 2
    err = capsys.readouterr().err
    assert "rnnkit: error: unknown key 'model.hiden_size' (did you mean 'model.hidden_size'?)" in err
    assert main(["train", str(path), "trainer.clip_norm=-1"]) == 2
    assert "trainer.clip_norm = -1.0: expected a number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["train"]) == 2
    assert "needs a recipe" in capsys.readouterr().err
    assert main(["train", f"resume={tmp_path / 'nothing'}"]) == 2
    assert main(["info", str(tmp_path / "nothing")]) == 1


def test_print_config_and_keys(tmp_path, capsys):
    path = write_recipe(tmp_path / "r.yaml", tmp_path / "run")
    assert main(["train", str(path), "model.hidden_size=24", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["hidden_size"] == 24 and printed["format_version"] == 1
    assert main(["train", str(path), "--keys"]) == 0
    assert "trainer.bptt" in capsys.readouterr().out


def test_train_then_info_eval_sample_plot(tmp_path, capsys):
    run = tmp_path / "run"
    path = write_recipe(tmp_path / "r.yaml", run, "trainer.eval_every=10", "trainer.max_epochs=2")
    assert main(["train", str(path), "model.hidden_size=12"]) == 0
    progress = capsys.readouterr().err
    assert "step 60/60" in progress and "valid step 10" in progress  # plain lines: not a terminal
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["hidden_size"] == 12 and saved["format_version"] == 1
    assert "model.hidden_size=12" in (run / "command.txt").read_text()

    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "task       toy" in out and "step       60" in out and "best       loss" in out
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 60 and info["parameters"] > 0 and info["best"]["step"] in range(10, 61, 10)

    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    best = losses(run, "loss", "valid.csv")
    assert metrics["loss"] == pytest.approx(min(best), rel=1e-6) and "ppl" in metrics
    assert main(["eval", str(run), "--split", "test"]) == 1
    assert "no split 'test'" in capsys.readouterr().err

    assert main(["sample", str(run), "--length", "5", "--first", "1"]) == 0
    tokens = capsys.readouterr().out.split()
    assert len(tokens) == 6 and tokens[0] == "1"
    with pytest.raises(SystemExit):
        main(["sample", str(run), "--help"])
    assert "options of task 'toy'" in capsys.readouterr().out
    assert main(["predict", str(run)]) == 1  # the toy task reads no new inputs
    assert "has no prediction for new data" in capsys.readouterr().err

    # RECIPE --resume RUN_DIR with an override: one more epoch
    assert main(["train", str(path), "model.hidden_size=12", "--resume", str(run), "trainer.max_epochs=3"]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert losses(run, "step") == list(range(1, 91))
    assert main(["train", str(path), "--resume", str(run), "trainer.max_epochs=4"]) == 1  # hidden_size 16 now
    assert "model.hidden_size: checkpoint 12, current 16" in capsys.readouterr().err

    assert main(["plot", str(run)]) == 0
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    assert names == ["acc.png", "loss.png", "optim.png", "ppl.png"]
    for p in written:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(p).stat().st_size > 10_000


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    """Kill a training process with SIGKILL between checkpoints, resume it, compare every later step."""
    opts = ["trainer.max_epochs=2", "trainer.checkpoint_every=4", "trainer.eval_every=10", "model.dropout=0.2",
            "model.num_layers=2", "data.doc_length=37"]
    ref_recipe = write_recipe(tmp_path / "ref.yaml", tmp_path / "ref", *opts)
    kill_recipe = write_recipe(tmp_path / "kill.yaml", tmp_path / "killed", *opts, "data.delay=0.1")
    reference = rnnkit("train", str(ref_recipe))
    victim = rnnkit("train", str(kill_recipe))
    csv = tmp_path / "killed" / "train.csv"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until step 27: past the checkpoint at 24, before the evaluation at 30
        if csv.exists() and len(csv.read_text().splitlines()) - 1 >= 27:
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = len(csv.read_text().splitlines()) - 1
    assert 27 <= killed_at < 60, killed_at

    resumed = rnnkit("train", f"resume={tmp_path / 'killed'}", "data.delay=0")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    resumed_at = int(re.search(r"resuming from .* at step (\d+)", err).group(1))
    assert 24 <= resumed_at <= killed_at  # usually 24: the checkpoint before the kill
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err

    for column in ("step", "loss", "grad_norm", "lr", "acc"):
        assert losses(tmp_path / "killed", column) == losses(tmp_path / "ref", column), column  # bit for bit
    for column in ("step", "loss", "acc"):
        assert losses(tmp_path / "killed", column, "valid.csv") == losses(tmp_path / "ref", column, "valid.csv")
