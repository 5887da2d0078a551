"""Two CPU processes (torchrun, gloo) train as one process on the combined batch; rank 0 alone writes."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from toytask import losses, recipe  # noqa: E402

import torch.distributed as dist  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_recipe(path, run_dir, *overrides):
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return yaml.safe_load(str(value)) if isinstance(value, str) else value

    path.write_text(yaml.safe_dump(plain(recipe(run_dir, *overrides))))
    return path


def test_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    opts = ["data.batch_size=4", "data.doc_length=37", "trainer.max_steps=12", "trainer.eval_every=6",
            "trainer.clip_norm=0.5", "model.num_layers=2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    ddp_recipe = write_recipe(tmp_path / "ddp.yaml", tmp_path / "ddp", *opts)
    one_recipe = write_recipe(tmp_path / "one.yaml", tmp_path / "one", *opts)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                "-m", "rnnkit", "train", str(ddp_recipe), "--import", "toytask"]
    two = subprocess.Popen(launcher, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    one = subprocess.run([sys.executable, "-m", "rnnkit", "train", str(one_recipe), "--import", "toytask"],
                         env=env, capture_output=True, text=True, timeout=300)
    out, err = two.communicate(timeout=300)
    assert two.returncode == 0, err[-4000:]
    assert one.returncode == 0, one.stderr[-4000:]
    assert "2 processes" in err

    # the same training, up to float summation order
    for column in ("loss", "grad_norm", "acc"):
        torch.testing.assert_close(torch.tensor(losses(tmp_path / "ddp", column)),
                                   torch.tensor(losses(tmp_path / "one", column)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "ddp", "loss", "valid.csv")),
                               torch.tensor(losses(tmp_path / "one", "loss", "valid.csv")), rtol=1e-4, atol=1e-5)
    w2 = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    w1 = load_file(str(tmp_path / "one" / "last" / "model.safetensors"))
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5)

    # written once, by rank 0: one row per step, one command line, the same files as one process writes
    assert losses(tmp_path / "ddp", "step") == list(range(1, 13))
    assert losses(tmp_path / "ddp", "step", "valid.csv") == [6, 12]
    assert len((tmp_path / "ddp" / "command.txt").read_text().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    # each rank's truncated-BPTT state is kept, for an exact resume
    carry = load_file(str(tmp_path / "ddp" / "last" / "carry.safetensors"))
    assert {k.split(".")[0] for k in carry} == {"rank0", "rank1"}
    assert carry["rank0.0"].shape == (2, 2, 16)  # (layers, rows of this rank, H)

    # both resume mid-epoch (each rank from its own carried state and RNG) and still agree
    launcher[launcher.index("--master_port") + 1] = str(free_port())
    launcher[launcher.index(str(ddp_recipe))] = f"resume={tmp_path / 'ddp'}"
    two = subprocess.Popen(launcher + ["trainer.max_steps=18"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    one = subprocess.run([sys.executable, "-m", "rnnkit", "train", f"resume={tmp_path / 'one'}",
                          "trainer.max_steps=18", "--import", "toytask"], env=env, capture_output=True, text=True,
                         timeout=300)
    out, err = two.communicate(timeout=300)
    assert two.returncode == 0 and one.returncode == 0, err[-3000:] + one.stderr[-3000:]
    assert "resuming from" in err and "at step 12" in err
    assert losses(tmp_path / "ddp", "step") == list(range(1, 19))
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "ddp", "loss")),
                               torch.tensor(losses(tmp_path / "one", "loss")), rtol=1e-4, atol=1e-5)
