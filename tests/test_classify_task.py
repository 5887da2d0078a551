"""The `classify` and `tag` tasks end to end through the `rnnkit` command: train, eval, predict, bad input."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from toytask import one_thread_fixture  # noqa: E402

from rnnkit.cli import load_run, main  # noqa: E402
from rnnkit.config import ConfigError, load_config  # noqa: E402
from rnnkit.data.sequences import SequenceSet, save_npz  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402
from rnnkit.train import evaluate  # noqa: E402

_one_thread = one_thread_fixture()


def recipe(tmp_path, task="classify", data=None, model=None, trainer=None, name="r.yaml"):
    config = {
        "task": task,
        "data": {"source": "larger", "length": 6, "min_length": 2, "train_size": 64, "valid_size": 24,
                 "test_size": 24, "batch_size": 16, **(data or {})},
        "model": {"cell": "gru", "hidden_size": 8, **(model or {})},
        "optim": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": 2, "log_every": 100, **(trainer or {})},
        "run": {"dir": str(tmp_path / "run"), "seed": 0, "device": "cpu"},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def user_file(tmp_path, n=24, kind="class", nan=False):
    """A user's .npz: class = whether feature 0 sums above 0; ragged lengths 2..6."""
    rng = np.random.default_rng(0)
    seqs = [rng.normal(5.0, 3.0, size=(int(L), 3)).astype(np.float32) for L in rng.integers(2, 7, n)]
    if nan:
        seqs[3][1, 2] = np.nan
    if kind == "tag":
        targets = [(s[:, 0] > 5).astype(np.int64) for s in seqs]
        data = SequenceSet(seqs, targets, ["lo", "hi"], "tag", [f"s{i}" for i in range(n)])
    else:
        data = SequenceSet(seqs, np.array([int(s[:, 0].mean() > 5) for s in seqs]), ["lo", "hi"], "class",
                           [f"s{i}" for i in range(n)])
    path = tmp_path / f"{kind}.npz"
    save_npz(path, data)
    return path


def test_train_eval_writes_assets_confusion_and_png(tmp_path, capsys):
    path = user_file(tmp_path)
    assert main(["train", recipe(tmp_path, data={"source": "file", "path": str(path), "test_fraction": 0.25,
                                                 "valid_fraction": 0.2})]) == 0
    run = tmp_path / "run"
    labels = json.loads((run / "labels.json").read_text())
    assert labels["classes"] == ["0", "1"] and labels["input_size"] == 3
    assert (run / "best" / "scaler.json").exists()
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    for word in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "confusion matrix", "recall"):
        assert word in out
    assert (run / "plots" / "confusion-test.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", str(run), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["macro_f1"] <= 1 and metrics["split"] == "test"


def test_standardisation_uses_training_statistics_only(tmp_path):
    path = user_file(tmp_path)
    scaled, raw = [get_task("classify")(load_config(recipe(tmp_path, data={"source": "file", "path": str(path),
                                                                          "standardize": flag})))
                   for flag in (True, False)]
    scaled.prepare_data(), raw.prepare_data()  # the same seeded splits, scaled and not
    train_steps = np.concatenate(raw.splits["train"].sequences)
    np.testing.assert_allclose(scaled.scaler.mean, train_steps.mean(0), rtol=1e-5)
    np.testing.assert_allclose(scaled.scaler.std, train_steps.std(0), rtol=1e-5)
    for split in ("valid", "test"):  # applied, never refitted, on the other splits
        np.testing.assert_allclose(np.concatenate(scaled.splits[split].sequences),
                                   (np.concatenate(raw.splits[split].sequences) - scaled.scaler.mean)
                                   / scaled.scaler.std, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("task_name,data,model", [
    ("classify", {"source": "larger"}, {"pooling": "attention", "bidirectional": True}),
    ("classify", {"source": "larger"}, {"pooling": "mean", "fcn_channels": [4, 5], "fcn_widths": [4, 3]}),
    ("classify", {"source": "larger"}, {"pooling": "meanmax", "cell": "gru", "deltas": True}),
    ("classify", {"source": "order", "alphabet": 4}, {"architecture": "window_mlp", "pooling": "max", "window": 3}),
    ("tag", {"source": "parity"}, {"cell": "lstm", "variant": "peephole"}),
    ("tag", {"source": "copy", "delay": 2, "symbols": 2, "alphabet": 3}, {"cell": "lstm"}),
])
def test_batch_composition_never_changes_the_metrics(tmp_path, task_name, data, model):
    """Padding is invisible: evaluating one sequence at a time gives the ragged batch's figures."""
    config = load_config(recipe(tmp_path, task_name, data=data, model=model))
    task = get_task(task_name)(config)
    task.prepare_data()
    torch.manual_seed(0)
    net = task.build_model()
    figures = []
    for size in (256, 1):
        task.config = config.replace(data=type(config.data)(**{**config.data.__dict__, "eval_batch_size": size}))
        figures.append(evaluate(task, net, task.eval_batches("test"), device=torch.device("cpu")))
    assert figures[0].keys() == figures[1].keys()
    for key in figures[0]:
        assert figures[0][key] == pytest.approx(figures[1][key], rel=1e-5, abs=1e-6), key
    if task_name == "tag":
        assert "sequence_accuracy" in figures[0]


def test_tag_and_regression_train_and_evaluate(tmp_path, capsys):
    assert main(["train", recipe(tmp_path, "tag", data={"source": "parity"},
                                 trainer={"metric": "accuracy", "mode": "max"})]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "sequence_accuracy" in out and "confusion matrix" in out
    assert main(["train", recipe(tmp_path, data={"source": "adding", "length": 8}, name="a.yaml"),
                 f"run.dir={tmp_path / 'adding'}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "adding"), "--split", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("mse ")


def test_fresh_synthetic_data_changes_each_epoch_and_is_seeded(tmp_path):
    config = load_config(recipe(tmp_path, data={"fresh": True}))
    task = get_task("classify")(config)
    task.prepare_data()
    task.build_model()
    first = [b.inputs for b in task.train_batches(1)]
    again = [b.inputs for b in task.train_batches(1)]
    other = [b.inputs for b in task.train_batches(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))


def test_predict_new_data_through_sample_hook(tmp_path, capsys):
    path = user_file(tmp_path)
    assert main(["train", recipe(tmp_path, data={"source": "file", "path": str(path), "valid_fraction": 0})]) == 0
    new = tmp_path / "new.csv"
    new.write_text("id,a,b,c\nx,5,5,5\nx,6,1,2\ny,-1,0,0\n")
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--input", str(new)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert main(["predict", str(tmp_path / "run"), "--input", str(new)]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert lines[0] == "id,predicted,probability" and [ln.split(",")[0] for ln in lines[1:]] == ["x", "y"]
    assert all(ln.split(",")[1] in ("0", "1") for ln in lines[1:])
    # the model's own answer on the features scaled with the run's scaler.json
    task, model, _, _ = load_run(tmp_path / "run")
    x = (torch.tensor([[5.0, 5, 5], [6, 1, 2]]) - torch.tensor(task.scaler.mean).float()) / torch.tensor(task.scaler.std).float()
    assert lines[1].split(",")[1] == task.meta["classes"][int(model(x[None])[0].argmax())]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,a,b\nx,5,5\n")
    assert main(["sample", str(tmp_path / "run"), "--input", str(bad)]) == 1
    assert "2 features; this model was trained on 3" in capsys.readouterr().err


@pytest.mark.parametrize("data,message", [
    ({"source": "aeon", "name": "JapaneseVowls"}, "did you mean 'JapaneseVowels'"),
    ({"source": "aeon", "name": "FordA"}, "not available offline"),
    ({"source": "copy"}, "use task: tag"),
    ({"source": "file", "path": "NAN"}, "NaN or infinite value"),
    ({"source": "file", "path": "/nonexistent.npz"}, "no such file"),
    ({"folds": 3, "fold": 3}, "data.fold = 3: expected 0..2"),
    ({"folds": 3, "fold_order": "sorted"}, "data.fold_order = 'sorted': expected one of 'random', 'contiguous'"),
])
def test_bad_input_stops_before_anything_is_written(tmp_path, capsys, data, message):
    if data.get("source") == "aeon":
        pytest.importorskip("aeon")
    if data.get("path") == "NAN":
        data = {**data, "path": str(user_file(tmp_path, nan=True))}
    assert main(["train", recipe(tmp_path, data=data)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("rnnkit: error:")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("order", ["random", "contiguous"])
def test_kfold_validation_parts_partition_the_training_split(tmp_path, order):
    """data.folds/fold/fold_order: the K validation parts partition the training split, each
    class spread evenly; contiguous parts are consecutive stretches of each class in file order."""
    path = user_file(tmp_path, n=30)
    seen = []
    for fold in range(3):
        task = get_task("classify")(load_config(recipe(tmp_path, data={
            "source": "file", "path": str(path), "test_fraction": 0.2, "folds": 3, "fold": fold,
            "fold_order": order})))
        task.prepare_data()
        train, valid = task.splits["train"], task.splits["valid"]
        assert not set(train.ids) & set(valid.ids)
        everything = sorted(train.ids + valid.ids, key=lambda i: int(i[1:]))
        for c in (0, 1):  # every class split 3 ways as evenly as it goes
            members = [i for i in everything if (train.targets[train.ids.index(i)] if i in train.ids
                                                 else valid.targets[valid.ids.index(i)]) == c]
            held = [i for i in members if i in valid.ids]
            assert abs(len(held) - len(members) / 3) < 1
            if order == "contiguous":
                assert held == [str(i) for i in np.array_split(np.array(members, dtype=object), 3)[fold]]
        seen.extend(valid.ids)
    assert sorted(seen) == sorted(everything)


def test_eval_without_a_validation_split_says_how_to_evaluate(tmp_path, capsys):
    assert main(["train", recipe(tmp_path, data={"source": "file", "path": str(user_file(tmp_path)),
                                                 "valid_fraction": 0}, trainer={"max_epochs": 1})]) == 0
    assert not (tmp_path / "run" / "best").exists() and (tmp_path / "run" / "last").exists()
    assert main(["eval", str(tmp_path / "run")]) == 1
    assert "--split test" in capsys.readouterr().err


def test_model_config_errors():
    with pytest.raises(ConfigError, match="model.cell = 'lstn'.*did you mean 'lstm'"):
        load_config({"task": "classify", "model": {"cell": "lstn"}})
    with pytest.raises(ConfigError, match="model.pooling = 'last': expected mean or max"):
        load_config({"task": "classify", "model": {"architecture": "window_mlp"}})
    with pytest.raises(ConfigError, match="model.chrono = 50: expected 0 unless cell is lstm"):
        load_config({"task": "classify", "model": {"cell": "gru", "chrono": 50}})
    with pytest.raises(ConfigError, match="data.path"):
        load_config({"task": "tag", "data": {"source": "file"}})
    with pytest.raises(ConfigError, match=r"model.fcn_widths = \[8, 5, 3\]: expected one width per block"):
        load_config({"task": "classify", "model": {"fcn_channels": [16, 16]}})
    with pytest.raises(ConfigError, match="model.fcn_channels.*window_mlp"):
        load_config({"task": "classify", "model": {"architecture": "window_mlp", "pooling": "max",
                                                   "fcn_channels": [4], "fcn_widths": [3]}})
    with pytest.raises(ConfigError, match="model.deltas = True: expected false for architecture window_mlp"):
        load_config({"task": "classify", "model": {"architecture": "window_mlp", "pooling": "max", "deltas": True}})
    with pytest.raises(ConfigError, match="model.fcn_channels.*tagger"):
        get_task("tag")(load_config({"task": "tag", "data": {"source": "parity"},
                                     "model": {"fcn_channels": [4], "fcn_widths": [3]}}))


@pytest.mark.parametrize("name", ["classify-japanese-vowels", "classify-digits", "classify-basicmotions", "adding",
                                  "parity", "copy", "order", "larger-total"])
def test_recipes_are_valid(name):
    config = load_config(TESTS.parent / "configs" / f"{name}.yaml")
    assert config.task in ("classify", "tag")


def test_ensemble_answers_with_the_members_mean_probability():
    from rnnkit.models import SequenceClassifier, SequenceEnsemble

    torch.manual_seed(0)
    members = [SequenceClassifier(3, 4, "gru", 5, pooling="mean") for _ in range(3)]
    ensemble = SequenceEnsemble(members).eval()
    x, lengths = torch.randn(6, 7, 3), torch.tensor([7, 5, 3, 1, 7, 2])
    log_p, state = ensemble(x, None, lengths)
    probs = torch.stack([m(x, None, lengths)[0].softmax(-1) for m in members]).mean(0)
    assert state is None and torch.allclose(log_p.exp(), probs, atol=1e-6)
    stacked, _ = ensemble(x, None, lengths, members=True)
    assert stacked.shape == (3, 6, 4) and torch.equal(stacked[1], members[1](x, None, lengths)[0])
    regression = SequenceEnsemble(members, regression=True)
    assert torch.allclose(regression(x, None, lengths)[0], stacked.mean(0))


@pytest.mark.parametrize("task_name,data", [("classify", {}), ("tag", {"source": "parity"}),
                                            ("classify", {"source": "adding", "length": 8})])
def test_ensemble_members_train_on_their_own_loss(tmp_path, capsys, task_name, data):
    """Training loss of an ensemble = mean of its members' losses; it trains, evaluates and predicts."""
    config = load_config(recipe(tmp_path, task_name, data=data, model={"ensemble": 3}))
    task = get_task(task_name)(config)
    task.prepare_data()
    torch.manual_seed(0)
    net = task.build_model().train()
    assert len(net.members) == 3
    batch = next(iter(task.train_batches(0)))
    got = task.compute_loss(net, batch, None).loss
    want = torch.stack([task._loss(m(batch.inputs, None, batch.lengths)[0].float(), batch.targets, batch.num_items)
                        for m in net.members]).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert main(["train", recipe(tmp_path, task_name, data=data, model={"ensemble": 3}, name="e.yaml")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--no-png"]) == 0
    out = capsys.readouterr().out
    assert ("mse " if "adding" in str(data) else "accuracy") in out


def task_batches(tmp_path, split="train", epoch=0, **data):
    """The classify recipe's batches of `split` (training: those of `epoch`) with `data` options."""
    task = get_task("classify")(load_config(recipe(tmp_path, data=data)))
    task.prepare_data()
    return list(task.train_batches(epoch) if split == "train" else task.eval_batches(split))


def same_batches_but_inputs(clean, changed, again):
    """Yield (clean, changed, real-step mask) per batch, having checked that the augmentation keeps
    the order, targets and lengths, is seeded, and leaves the padding alone."""
    for c, s, a in zip(clean, changed, again):
        assert torch.equal(c.targets, s.targets) and torch.equal(c.lengths, s.lengths)  # same order
        assert torch.equal(s.inputs, a.inputs)  # seeded
        real = torch.arange(c.inputs.shape[1])[None, :] < c.lengths[:, None]
        assert torch.equal(s.inputs[~real], c.inputs[~real])  # padding untouched
        yield c, s, real


def augmented(tmp_path, key):
    """batches(value, split="train", epoch=0, **data): `task_batches` with data option `key` = value."""
    def batches(value, split="train", epoch=0, **data):
        return task_batches(tmp_path, split, epoch, **{key: value}, **data)
    return batches


def check_own_stream_and_training_only(batches, value, clean, changed, other, other_value):
    """The augmentation at `value` does not change the draws of data option `other` (each has its
    own seeded stream), and evaluation batches are the data as it is."""
    alone, both = batches(0.0, **{other: other_value}), batches(value, **{other: other_value})
    real = torch.arange(both[0].inputs.shape[1])[None, :] < both[0].lengths[:, None]
    torch.testing.assert_close((both[0].inputs - changed[0].inputs)[real], (alone[0].inputs - clean[0].inputs)[real])
    for c, a in zip(batches(0.0, "test"), batches(value, "test")):
        assert torch.equal(c.inputs, a.inputs)  # evaluation sees the data as it is


def sequences_of(clean, changed, again):
    """(clean, changed) real steps of each training sequence, checked as in same_batches_but_inputs."""
    for c, s, _ in same_batches_but_inputs(clean, changed, again):
        for i, n in enumerate(c.lengths.tolist()):
            yield c.inputs[i, :n], s.inputs[i, :n]


def test_input_noise_perturbs_training_batches_only_at_real_steps_and_is_seeded(tmp_path):
    def batches(noise, split="train", epoch=0):
        return task_batches(tmp_path, split, epoch, input_noise=noise)

    clean, noisy, again = batches(0.0), batches(0.5), batches(0.5)
    other_epoch, clean_other = batches(0.5, epoch=1), batches(0.0, epoch=1)
    for c, n, real in same_batches_but_inputs(clean, noisy, again):
        diff = (n.inputs - c.inputs)[real]
        assert diff.std().item() == pytest.approx(0.5, rel=0.25)
    assert not torch.equal(other_epoch[0].inputs - clean_other[0].inputs, noisy[0].inputs - clean[0].inputs)
    for c, n in zip(batches(0.0, "test"), batches(0.5, "test")):
        assert torch.equal(c.inputs, n.inputs)  # evaluation sees the data as it is


def test_offset_noise_shifts_each_training_sequence_by_one_vector_and_is_seeded(tmp_path):
    batches = augmented(tmp_path, "offset_noise")
    clean, shifted, again = batches(0.0), batches(0.7), batches(0.7)
    shifts = []
    for x, y in sequences_of(clean, shifted, again):
        torch.testing.assert_close(y - x, (y - x)[:1].expand_as(x))  # one vector per sequence
        shifts.append((y - x)[0])
    shifts = torch.stack(shifts)  # (sequences, D)
    assert shifts.std().item() == pytest.approx(0.7, rel=0.25)
    assert not torch.allclose(shifts[0], shifts[1])  # each sequence its own
    other = batches(0.7, epoch=1)[0].inputs - batches(0.0, epoch=1)[0].inputs
    assert not torch.allclose(other[:, 0], (shifted[0].inputs - clean[0].inputs)[:, 0])  # new draws each epoch
    check_own_stream_and_training_only(batches, 0.7, clean, shifted, "input_noise", 0.3)


def test_scale_noise_multiplies_each_feature_of_each_training_sequence_by_one_factor(tmp_path):
    batches = augmented(tmp_path, "scale_noise")
    clean, scaled, again = batches(0.0), batches(0.2), batches(0.2)
    def factor(x, y):  # (n, D) real steps -> (D,): the least-squares factor, checked exact
        x, y = x.double(), y.double()
        f = (x * y).sum(0) / (x * x).sum(0)
        torch.testing.assert_close(y, x * f, atol=1e-5, rtol=1e-5)  # one factor per feature
        return f

    factors = torch.stack([factor(x, y) for x, y in sequences_of(clean, scaled, again)])  # (sequences, D)
    assert factors.mean().item() == pytest.approx(1.0, abs=0.05)
    assert factors.std().item() == pytest.approx(0.2, rel=0.25)
    assert not torch.allclose(factors[0], factors[1])  # each sequence its own
    assert not torch.equal(batches(0.2, epoch=1)[0].inputs, batches(0.0, epoch=1)[0].inputs)  # every epoch
    check_own_stream_and_training_only(batches, 0.2, clean, scaled, "offset_noise", 0.5)
    with pytest.raises(ConfigError, match="scale_noise"):
        load_config(recipe(tmp_path, data={"scale_noise": -0.1}))


def test_feature_mask_zeroes_whole_features_of_training_sequences_and_is_seeded(tmp_path):
    batches = augmented(tmp_path, "feature_mask")
    clean, masked, again = batches(0.0), batches(0.3), batches(0.3)
    kept = []
    for x, y in sequences_of(clean, masked, again):
        zero = (y == 0).all(0)  # (D,): features masked at every step
        torch.testing.assert_close(y[:, ~zero], x[:, ~zero])  # the others untouched
        assert not zero.any() or not (x[:, zero] == 0).all()  # a masked feature was not zero before
        kept.append(~zero)
    kept = torch.stack(kept).float()  # (sequences, D)
    assert kept.mean().item() == pytest.approx(0.7, abs=0.12)  # 128 draws here: 3 standard errors
    assert not torch.equal(kept[0], kept[1]) or not torch.equal(kept[1], kept[2])  # each sequence its own
    assert not torch.equal(batches(0.3, epoch=1)[0].inputs, batches(0.0, epoch=1)[0].inputs)  # every epoch
    check_own_stream_and_training_only(batches, 0.3, clean, masked, "input_noise", 0.3)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="feature_mask"):
            load_config(recipe(tmp_path, data={"feature_mask": bad}))


def test_offset_noise_must_not_be_negative(tmp_path):
    with pytest.raises(ConfigError, match="offset_noise"):
        load_config(recipe(tmp_path, data={"offset_noise": -0.1}))


def test_random_warps_resample_each_sequence_linearly_keeping_its_ends():
    from rnnkit.tasks.classify import random_warps
    lengths = torch.tensor([9, 1, 20, 5])
    N, L = 4, 20
    t = torch.arange(L, dtype=torch.float32)
    ramp = torch.stack([t, 3 * t + 1], dim=-1).expand(N, L, 2).clone()  # (N, L, 2)
    ramp[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    out, new = random_warps(ramp, lengths, 0.3, torch.Generator().manual_seed(0))
    assert out.shape == (N, int(new.max()), 2)
    changed = 0
    for i in range(N):
        l, m = int(lengths[i]), int(new[i])
        assert max(1, round(l * 0.7) - 1) <= m <= round(l * 1.3) + 1
        changed += m != l
        times = torch.linspace(0, l - 1, m) if m > 1 else torch.zeros(1)
        torch.testing.assert_close(out[i, :m, 0], times)  # a ramp stays a ramp, ends kept
        torch.testing.assert_close(out[i, :m, 1], 3 * times + 1)
        assert torch.all(out[i, m:] == 0)
    assert changed > 0
    again, new_again = random_warps(ramp, lengths, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(again, out) and torch.equal(new_again, new)  # seeded


def freqt(c, alpha, order):
    """SPTK's `freqt` recursion (Oppenheim & Johnson 1972): the cepstrum c_0..c_M, frequency-warped
    by the all-pass warp of `alpha`, to order `order`: a plain reference loop."""
    d = np.zeros(order + 1)
    for i in range(len(c) - 1, -1, -1):
        prev = d.copy()
        d[0] = c[i] + alpha * prev[0]
        if order >= 1:
            d[1] = (1 - alpha * alpha) * prev[0] + alpha * prev[1]
        for j in range(2, order + 1):
            d[j] = prev[j - 1] + alpha * (prev[j] - d[j - 1])
    return d


def test_cepstral_warps_match_the_freqt_recursion_and_move_a_resonance():
    from rnnkit.tasks.classify import cepstral_warps
    D = 12
    alphas = torch.tensor([0.0, 0.05, -0.2, 0.42], dtype=torch.float64)
    W = cepstral_warps(alphas, D)
    assert W.shape == (4, D, D) and W.dtype == torch.float64
    torch.testing.assert_close(W[0], torch.eye(D, dtype=torch.float64), rtol=0, atol=1e-14)
    for k, a in enumerate(alphas.tolist()):  # column n: the warp of the unit cepstrum c_n = 1
        ref = np.stack([freqt(np.r_[0.0, np.eye(D)[n]], a, D)[1:] for n in range(D)], axis=1)
        np.testing.assert_allclose(W[k].numpy(), ref, rtol=0, atol=1e-12)
    # the warped log spectrum at β(ω) is the log spectrum at ω, up to a constant (c_0 is not mapped):
    # a resonance at θ (pole pair of radius r, c_n = r^n cos(nθ) / n) moves to β(θ), up for α > 0
    order, r, theta = 200, 0.9, 0.8
    n = torch.arange(1, order + 1, dtype=torch.float64)
    c = r ** n * torch.cos(n * theta) / n

    def log_spectrum(cepstrum, at):
        return 2 * (torch.cos(at[:, None] * n[None, :]) * cepstrum).sum(1)
    omega = torch.linspace(0, math.pi, 4001, dtype=torch.float64)
    for a in (0.3, -0.3):
        warped = cepstral_warps(torch.tensor([a]), order)[0] @ c
        beta = omega + 2 * torch.atan2(a * torch.sin(omega), 1 - a * torch.cos(omega))
        gap = log_spectrum(warped, beta) - log_spectrum(c, omega)
        assert (gap - gap.mean()).abs().max().item() < 1e-6  # the rest: output truncated at 200
        assert (omega[log_spectrum(warped, omega).argmax()].item() > theta + 0.2) == (a > 0)
    with pytest.raises(ValueError, match="α"):
        cepstral_warps(torch.tensor([1.0]), D)


def test_freq_warp_maps_each_training_sequence_by_one_cepstral_warp_in_the_datas_units(tmp_path):
    from scipy.optimize import minimize_scalar

    from rnnkit.tasks.classify import cepstral_warps
    batches = augmented(tmp_path, "freq_warp")
    clean, warped, again = batches(0.0), batches(0.3), batches(0.3)
    task = get_task("classify")(load_config(recipe(tmp_path, data={"freq_warp": 0.3})))
    task.prepare_data()
    mean, std = torch.as_tensor(task.scaler.mean), torch.as_tensor(task.scaler.std)
    assert not torch.allclose(mean, torch.zeros_like(mean))  # the warp is in the data's units, not the scaled ones
    found = []
    for x, y in sequences_of(clean, warped, again):
        x, y = x.double() * std + mean, y.double() * std + mean  # (n, D) in the data's units

        def misfit(a):
            return float((x @ cepstral_warps(torch.tensor([a]), x.shape[1])[0].T - y).abs().max())
        best = minimize_scalar(misfit, bounds=(-0.3, 0.3), method="bounded", options={"xatol": 1e-9})
        assert best.fun < 1e-4 * max(1.0, float(x.abs().max()))  # one warp of α in ± 0.3 maps the sequence
        found.append(best.x)
    found = np.array(found)
    assert found.min() < -0.1 and found.max() > 0.1 and len(np.unique(found.round(4))) > len(found) // 2
    assert not torch.equal(batches(0.3, epoch=1)[0].inputs, warped[0].inputs)  # new draws each epoch
    check_own_stream_and_training_only(batches, 0.3, clean, warped, "input_noise", 0.3)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="freq_warp"):
            load_config(recipe(tmp_path, data={"freq_warp": bad}, name="f.yaml"))


def test_time_warp_is_training_only_and_refused_by_a_tagger(tmp_path):
    def batches(warp, split="train"):
        return task_batches(tmp_path, split, time_warp=warp, length=12, min_length=4)

    plain, warped, again = batches(0.0), batches(0.25), batches(0.25)
    assert any(not torch.equal(p.lengths, w.lengths) for p, w in zip(plain, warped))
    for p, w, a in zip(plain, warped, again):
        assert torch.equal(p.targets, w.targets)  # same sequences in the same order
        assert torch.equal(w.inputs, a.inputs) and torch.equal(w.lengths, a.lengths)  # seeded
    for p, w in zip(batches(0.0, "test"), batches(0.25, "test")):
        assert torch.equal(p.inputs, w.inputs) and torch.equal(p.lengths, w.lengths)
    with pytest.raises(ConfigError, match="time_warp"):
        get_task("tag")(load_config(recipe(tmp_path, task="tag", data={"source": "parity", "time_warp": 0.2},
                                           name="t.yaml")))
    with pytest.raises(ConfigError, match="time_warp"):
        load_config(recipe(tmp_path, data={"time_warp": 1.0}, name="w.yaml"))


def test_random_crops_are_contiguous_parts_of_each_sequence_and_seeded(tmp_path):
    def batches(crop, split="train", epoch=0, noise=0.0):
        return task_batches(tmp_path, split, epoch, crop=crop, input_noise=noise, length=12, min_length=4)

    whole, cropped, again = batches(1.0), batches(0.5), batches(0.5)
    shorter = 0
    for w, c, a in zip(whole, cropped, again):
        assert torch.equal(w.targets, c.targets)  # same sequences in the same order
        assert torch.equal(c.inputs, a.inputs) and torch.equal(c.lengths, a.lengths)  # seeded
        for i in range(len(w.lengths)):
            n, m = int(w.lengths[i]), int(c.lengths[i])
            assert -(-n // 2) <= m <= n
            shorter += m < n
            part = c.inputs[i, :m]
            starts = [s for s in range(n - m + 1) if torch.equal(w.inputs[i, s:s + m], part)]
            assert starts, "a crop is a contiguous run of the sequence's steps"
            assert torch.all(c.inputs[i, m:] == 0)
    assert shorter > 0
    # noise comes from its own stream: cropping does not change its draws
    noisy, both = batches(1.0, noise=0.3), batches(0.5, noise=0.3)
    real = torch.arange(both[0].inputs.shape[1])[None, :] < both[0].lengths[:, None]
    torch.testing.assert_close((both[0].inputs - cropped[0].inputs)[real], (noisy[0].inputs - whole[0].inputs)[real])
    for c, n in zip(batches(1.0, "test"), batches(0.5, "test")):
        assert torch.equal(c.inputs, n.inputs) and torch.equal(c.lengths, n.lengths)  # evaluation: whole
    with pytest.raises(ConfigError, match="crop"):
        get_task("tag")(load_config(recipe(tmp_path, task="tag", data={"source": "parity", "crop": 0.5})))


def test_distillation_matches_the_teachers_softened_answers(tmp_path):
    teacher_dir = tmp_path / "teacher"
    r = recipe(tmp_path, data={"standardize": False}, model={"ensemble": 2}, name="t.yaml")
    assert main(["train", r, f"run.dir={teacher_dir}"]) == 0
    config = load_config(recipe(tmp_path, model={"teacher": str(teacher_dir), "distill_weight": 1.0,
                                                 "distill_temperature": 3.0}, name="s.yaml"))
    task = get_task("classify")(config)
    task.prepare_data()
    model = task.build_model()
    batch = next(iter(task.train_batches(0)))  # loads the teacher
    teacher, scale, shift = task._teacher
    # our standardised inputs, mapped back: the teacher (trained unstandardised) sees the raw values
    std, mean = (torch.as_tensor(a, dtype=torch.float32) for a in (task.scaler.std, task.scaler.mean))
    assert not torch.allclose(std, torch.ones_like(std))
    torch.testing.assert_close(batch.inputs * scale + shift, batch.inputs * std + mean)
    model.train()
    out = task.compute_loss(model, batch, None)
    with torch.no_grad():
        student, _ = model(batch.inputs, None, batch.lengths)
        t_logp, _ = teacher(batch.inputs * scale + shift, None, batch.lengths)
    p = (t_logp / 3).softmax(-1)
    want = (p * (p.log() - (student / 3).log_softmax(-1))).sum(-1).mean() * 9
    torch.testing.assert_close(out.loss.detach(), want, rtol=1e-4, atol=1e-6)
    # end to end, and the answers it refuses
    assert main(["train", recipe(tmp_path, model={"teacher": str(teacher_dir / "last")}, name="e.yaml"),
                 f"run.dir={tmp_path / 'student'}"]) == 0
    other = recipe(tmp_path, data={"source": "parity"}, name="o.yaml")
    assert main(["train", other, f"run.dir={tmp_path / 'parity'}", "trainer.max_epochs=1"]) == 0
    for teacher, words in ((tmp_path / "parity", "classes"), (tmp_path / "nowhere", "trained classify run")):
        bad = load_config(recipe(tmp_path, model={"teacher": str(teacher)}, name="b.yaml"))
        task = get_task("classify")(bad)
        task.prepare_data()
        with pytest.raises(ConfigError, match=words):
            task.train_batches(0)
    with pytest.raises(ConfigError, match="single model"):
        load_config(recipe(tmp_path, model={"teacher": str(teacher_dir), "ensemble": 3}, name="x.yaml"))


@pytest.mark.parametrize("task_name,data", [("classify", {"source": "larger"}), ("tag", {"source": "parity"})])
def test_label_smoothing_trains_on_softened_targets_and_evaluates_plain(tmp_path, task_name, data):
    config = load_config(recipe(tmp_path, task_name, data=data, model={"label_smoothing": 0.2}))
    task = get_task(task_name)(config)
    task.prepare_data()
    torch.manual_seed(0)
    model = task.build_model()
    batch = next(iter(task.train_batches(0)))
    K = task.num_outputs
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            out = task.compute_loss(model, batch, None)
            logits, _ = model(batch.inputs, None, batch.lengths)
        logp = logits.float().log_softmax(-1).reshape(-1, K)
        y = batch.targets.reshape(-1)
        real = y >= 0
        logp, y = logp[real], y[real]
        s = 0.2 if training else 0.0
        soft = torch.full_like(logp, s / K)
        soft[torch.arange(len(y)), y] += 1 - s
        torch.testing.assert_close(out.loss, -(soft * logp).sum(-1).mean(), rtol=1e-5, atol=1e-6)


def test_test_copies_average_the_probabilities_over_noisy_copies_and_are_repeatable(tmp_path, capsys):
    """data.test_copies = C: evaluation and predict answer with the mean probability over C copies
    of each sequence carrying the training noise (real steps only); C = 0 is the model alone."""
    path = user_file(tmp_path)
    data = {"source": "file", "path": str(path), "valid_fraction": 0, "input_noise": 0.5, "offset_noise": 0.3}
    assert main(["train", recipe(tmp_path, data=data)]) == 0
    task, model, _, _ = load_run(tmp_path / "run")
    task.prepare_data()
    (batch,) = task.eval_batches("test")
    x, lengths = batch.inputs, batch.lengths
    plain = task.answer(model, x, lengths)
    torch.testing.assert_close(plain, model(x, None, lengths)[0])

    import dataclasses

    task.config = dataclasses.replace(task.config, data=dataclasses.replace(task.config.data, test_copies=3))
    got = task.answer(model, x, lengths)
    assert torch.equal(got, task.answer(model, x, lengths))  # seeded: the same copies every time
    generator = torch.Generator().manual_seed(task.config.run.seed + 231_131)
    real = (torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None]).float()
    probs = []
    for _ in range(3):
        shift = torch.randn(x.shape, generator=generator) * 0.5 + torch.randn(x.shape[0], 1, x.shape[2],
                                                                             generator=generator) * 0.3
        probs.append(model(x + shift * real, None, lengths)[0].softmax(-1))
    torch.testing.assert_close(got.exp(), torch.stack(probs).mean(0))
    assert not torch.allclose(got, plain.log_softmax(-1))

    metrics = evaluate(task, model, task.eval_batches("test"), device=torch.device("cpu"))  # answers the same way
    assert metrics["accuracy"] == pytest.approx((got.argmax(-1) == batch.targets).float().mean().item())

    with pytest.raises(ConfigError, match="test_copies"):
        load_config(recipe(tmp_path, data={"test_copies": 4}, name="no-noise.yaml"))
