"""Checkpoint directories: round trip, RNG states, mismatch errors, no unpickling,
and atomic replacement under a crash at every stage (injected, and real SIGKILLs)."""
import json
import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toytask import make_config, one_thread_fixture, train  # noqa: E402

from rnnkit.config import FORMAT_VERSION  # noqa: E402
from rnnkit.train import checkpoint as ck  # noqa: E402
from rnnkit.train.checkpoint import (CheckpointError, find_checkpoint, load_carry, load_checkpoint,  # noqa: E402
                                     load_scheduler_state, pack_state, read_state, rng_state,
                                     save_checkpoint, set_rng_state, unpack_state)

_one_thread = one_thread_fixture()


def _model(hidden=8):
    torch.manual_seed(hidden)
    return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 3))


def _save(target, model, step, **kwargs):
    config = {"format_version": FORMAT_VERSION, "task": "demo", "model": {"hidden_size": model[0].out_features}}
    return save_checkpoint(target, config=config, model=model, trainer_state={"step": step}, **kwargs)


def test_round_trip_weights_optimizer_scheduler_carry_assets(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    carry = (torch.randn(1, 2, 8), torch.randn(1, 2, 8))
    _save(tmp_path / "last", model, 7, optimizer=opt, scheduler_state={"epochs_done": 2, "plateau_best": None},
          carry=pack_state(carry, "rank0"),
          save_assets=lambda d: (d / "vocab.json").write_text('{"a": 1}'))
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.1)
    state = load_checkpoint(tmp_path / "last", fresh, optimizer=fresh_opt, task="demo",
                            model_config={"hidden_size": 8})
    assert state["step"] == 7 and state["format_version"] == FORMAT_VERSION
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    assert load_scheduler_state(tmp_path / "last") == {"epochs_done": 2, "plateau_best": None}
    restored = unpack_state(load_carry(tmp_path / "last"), "rank0")
    assert all(torch.equal(a, b) for a, b in zip(carry, restored))
    assert unpack_state({}, "rank1") is None
    assert (tmp_path / "last" / "vocab.json").read_text() == '{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary leftovers


def test_rng_states_survive_json():
    state = json.loads(json.dumps(rng_state()))
    expected = (random.random(), np.random.rand(), torch.rand(3), torch.randn(2))
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3), torch.randn(2))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2]) and torch.equal(expected[3], again[3])


def test_model_mismatch_says_what_differs(tmp_path):
    _save(tmp_path / "last", _model(8), 1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "last", _model(16), task="other", model_config={"hidden_size": 16})
    text = str(err.value)
    assert "task: checkpoint 'demo', current 'other'" in text
    assert "model.hidden_size: checkpoint 8, current 16" in text
    assert "0.weight: checkpoint (8, 4) float32, model (16, 4) float32" in text
    extra = torch.nn.Sequential(*_model(8), torch.nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match="3.weight: in the model, not in the checkpoint"):
        load_checkpoint(tmp_path / "last", extra)


def test_a_model_key_added_later_loads_at_its_default_only(tmp_path):
    _save(tmp_path / "last", _model(8), 1)  # its config has no "ar_order": written before that option existed
    defaults = {"hidden_size": 32, "ar_order": 0}
    load_checkpoint(tmp_path / "last", _model(8), model_config={"hidden_size": 8, "ar_order": 0},
                    model_defaults=defaults)
    with pytest.raises(CheckpointError, match="model.ar_order: checkpoint '<absent>', current 3"):
        load_checkpoint(tmp_path / "last", _model(8), model_config={"hidden_size": 8, "ar_order": 3},
                        model_defaults=defaults)
    with pytest.raises(CheckpointError, match="model.ar_order: checkpoint '<absent>', current 0"):
        load_checkpoint(tmp_path / "last", _model(8), model_config={"hidden_size": 8, "ar_order": 0})


def test_format_version_mismatch(tmp_path):
    _save(tmp_path / "last", _model(), 1)
    path = tmp_path / "last" / "trainer_state.json"
    state = json.loads(path.read_text())
    state["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}; this rnnkit reads "
                                              f"format version {FORMAT_VERSION}"):
        load_checkpoint(tmp_path / "last", _model())


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_loading_never_unpickles_arbitrary_objects(tmp_path, monkeypatch):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _save(tmp_path / "last", model, 1, optimizer=opt)
    with open(tmp_path / "last" / "optimizer.pt", "wb") as f:
        pickle.dump({"state": {}, "param_groups": [], "x": _Payload()}, f, protocol=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path / "last", _model(), optimizer=torch.optim.SGD(_model().parameters(), lr=0.1))
    assert not (tmp_path / "PWNED").exists()


# ----------------------------------------------------------------------------- crashes during a save


class Crash(Exception):
    pass


def _crash_on(monkeypatch, name, call):
    """Make checkpoint.<name> (os.replace / shutil.rmtree) raise on its `call`-th use: a crash there."""
    module = ck.os if name == "replace" else ck.shutil
    real = getattr(module, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise Crash(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("stage, expected_step", [
    ("writing", 1),       # dies while the new directory is half written
    ("replace-1", 1),     # dies before the old checkpoint is moved aside
    ("replace-2", 2),     # dies with the old one in the trash and the new one not yet in place
    ("cleanup", 2),       # dies while deleting the trash
])
def test_crash_at_any_stage_leaves_a_loadable_checkpoint(tmp_path, monkeypatch, stage, expected_step):
    old, new = _model(), _model()
    with torch.no_grad():
        for p in new.parameters():
            p.add_(1.0)
    _save(tmp_path / "last", old, 1)
    if stage == "writing":
        def assets(d):
            raise Crash("writing")
        with pytest.raises(Crash):
            _save(tmp_path / "last", new, 2, save_assets=assets)
    else:
        _crash_on(monkeypatch, {"replace-1": "replace", "replace-2": "replace", "cleanup": "rmtree"}[stage],
                  2 if stage == "replace-2" else 1)
        with pytest.raises(Crash):
            _save(tmp_path / "last", new, 2)
        monkeypatch.undo()
    ckpt = find_checkpoint(tmp_path)
    assert ckpt is not None and read_state(ckpt)["step"] == expected_step
    loaded = _model(8)
    load_checkpoint(ckpt, loaded)
    want = old if expected_step == 1 else new
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), want.state_dict().values()))
    _save(tmp_path / "last", old, 3)  # the next save tidies up whatever the crash left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert read_state(find_checkpoint(tmp_path))["step"] == 3


KILL_SCRIPT = textwrap.dedent("""
    import os, random, signal, sys, time
    import torch
    from rnnkit.train.checkpoint import find_checkpoint, load_checkpoint, read_state, save_checkpoint

    root = sys.argv[1]
    model = torch.nn.Linear(512, 1024)  # 2 MB of weights: a save takes a little while
    random.seed(0)
    for attempt in range(8):
        pid = os.fork()
        if pid == 0:  # the worker: save, save, save, until killed
            ckpt = find_checkpoint(root)
            step = read_state(ckpt)["step"] if ckpt else 0
            while True:
                step += 1
                with torch.no_grad():
                    model.weight.fill_(step)
                save_checkpoint(os.path.join(root, "last"), config={"task": "kill"}, model=model,
                                trainer_state={"step": step})
        time.sleep(random.uniform(0.05, 0.4))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        ckpt = find_checkpoint(root)
        state = read_state(ckpt)
        load_checkpoint(ckpt, model)
        assert float(model.weight.detach()[0, 0]) == state["step"], (ckpt, state)
        print(attempt, ckpt.name, state["step"], sorted(os.listdir(root)), flush=True)
    print("ok")
""")


def test_sigkill_during_saves_always_leaves_a_consistent_checkpoint(tmp_path):
    """A worker saves in a loop and is SIGKILLed at random instants, eight times over."""
    root = tmp_path / "run"
    root.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(root)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok"), proc.stdout
    steps = [int(line.split()[2]) for line in proc.stdout.splitlines()[:-1]]
    assert steps == sorted(steps) and steps[-1] > steps[0]  # progress, never going back


def test_trainer_checkpoint_is_self_describing(tmp_path):
    train(make_config(tmp_path / "run", "trainer.max_steps=3"))
    state = read_state(tmp_path / "run" / "last")
    assert state["step"] == 3 and state["task"] == "toy" and state["train"]["batch"] == 3
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    assert "embed.weight" in state["model_signature"]
    assert (tmp_path / "run" / "last" / "carry.safetensors").exists()  # the streams' state at step 3
