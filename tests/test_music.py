"""Music: piano rolls against music21's own notes, transposition, the split, the Bernoulli NLL,
training, generation to MIDI and back, and bad input."""
import math
import sys
from argparse import Namespace
from fractions import Fraction

import numpy as np
import pytest
import torch
import yaml

music21 = pytest.importorskip("music21")

from rnnkit.cli import load_run, main  # noqa: E402
from rnnkit.config import ConfigError, load_config  # noqa: E402
from rnnkit.data import music as md  # noqa: E402
from rnnkit.metrics.music import frame_accuracy, frame_counts, frame_nll, music_metrics  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402

PIECES = 6  # the first six chorales: enough for all three splits, ~2 s to parse


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test converts into one private cache, never the user's."""
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def first_score():
    name = md.chorale_names(1)[0]
    return name, music21.corpus.parse(name)


def recipe(tmp_path, data=None, model=None, trainer=None, optim=None):
    config = {
        "task": "music",
        "data": {"limit": PIECES, "batch_size": 4, **(data or {})},
        "model": {"cell": "lstm", "hidden_size": 12, **(model or {})},
        "optim": {"name": "adam", "lr": 0.03, **(optim or {})},
        "trainer": {"max_epochs": 1, "log_every": 1000, **(trainer or {})},
        "run": {"dir": str(tmp_path / "run"), "seed": 0, "device": "cpu", "threads": 1},
    }
    path = tmp_path / "music.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("fpq", [1, 2])
def test_roll_has_the_notes_music21_sounds_at_each_frame(first_score, fpq):
    name, score = first_score
    roll, dropped = md.notes_to_roll(md.score_notes(score), fpq)
    assert dropped == 0 and roll.shape == (int(score.highestTime * fpq), 88)
    # oracle: music21's chordify, the vertical slice of every part at each time
    chords = list(score.chordify().flatten().notes)
    checked = 0
    for t in range(len(roll)):
        time = Fraction(t, fpq)
        sounding = {p.midi for c in chords if c.offset <= time < c.offset + c.quarterLength for p in c.pitches}
        assert set((np.flatnonzero(roll[t]) + md.LOWEST).tolist()) == sounding, f"frame {t} of {name}"
        checked += len(sounding)
    assert checked > 100
    # a known frame, written out by hand: bwv269 (Riemenschneider 1) opens on a G major chord
    assert set((np.flatnonzero(roll[0]) + md.LOWEST).tolist()) == {43, 59, 62, 67}


def test_transposition_puts_the_key_on_c_and_shifts_the_roll(first_score):
    name, score = first_score
    shift, key = md.key_shift(score)
    assert -6 <= shift <= 5 and key == "G major"
    assert score.transpose(shift).analyze("key").tonic.name == "C"
    plain = md.score_to_piece(score, name, 1, transpose=False).roll
    moved = md.score_to_piece(score, name, 1, transpose=True)
    assert moved.shift == shift == 5
    assert np.array_equal(moved.roll[:, shift:], plain[:, :88 - shift]) and moved.roll[:, :shift].sum() == 0
    plain_melody = md.score_melody(score)
    assert moved.melody == [(p + shift, d) for p, d in plain_melody]


def test_split_is_by_piece_disjoint_stable_and_about_60_20_20():
    names = md.chorale_names()
    assert len(names) == len(set(names)) == 350  # 371 catalogue entries, 350 distinct files
    splits = {s: [n for n in names if md.split_of(n, 0) == s] for s in md.SPLITS}
    assert sum(map(len, splits.values())) == 350
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["valid"]) & set(splits["test"])
    assert [len(splits[s]) for s in md.SPLITS] == [198, 79, 73]  # docs/music.md states these counts
    # a subset splits as the whole does, and another seed gives another split
    data = md.MusicSet()
    for n in names[:20]:
        data.add(md.Piece(n, np.ones((2, 88), np.uint8), []))
    assert {s: v.names for s, v in md.split_set(data, 0).items()} == {s: [n for n in names[:20] if n in splits[s]]
                                                                     for s in md.SPLITS}
    assert [md.split_of(n, 1) for n in names] != [md.split_of(n, 0) for n in names]


def test_pitches_outside_the_piano_are_dropped_and_counted():
    notes = [(20, Fraction(0), Fraction(1)), (60, Fraction(0), Fraction(2)), (109, Fraction(1), Fraction(1)),
             (100, Fraction(1, 2), Fraction(1))]
    roll, dropped = md.notes_to_roll(notes, 2, shift=9)  # 100 + 9 = 109 is out too; 20 + 9 = 29 is in
    assert dropped == 2
    assert roll.shape == (4, 88)
    assert np.flatnonzero(roll.any(0)).tolist() == [29 - 21, 69 - 21]
    assert roll[:, 69 - 21].tolist() == [1, 1, 1, 1] and roll[:, 29 - 21].tolist() == [1, 1, 0, 0]


def test_melody_tokens_round_trip_and_name_a_misplaced_token():
    events = [(67, Fraction(1)), (None, Fraction(1, 2)), (69, Fraction(1, 3)), (71, Fraction(3, 2))]
    tokens = md.melody_tokens(events)
    assert tokens == ["p67", "d1", "rest", "d0.5", "p69", "d1/3", "p71", "d1.5", "<eos>"]
    assert md.tokens_to_melody(tokens) == events
    with pytest.raises(md.MusicError, match="token 1 is 'p60'"):
        md.tokens_to_melody(["p67", "p60"])


def test_music21_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)
    with pytest.raises(md.MusicError, match=r"rnnkit\[music\]"):
        md.require_music21()


def test_user_files_bad_and_empty_ones_are_named_and_skipped(tmp_path, capsys):
    good = np.zeros((4, 88), np.uint8)
    good[:, 60 - 21] = 1
    good[2:, 64 - 21] = 1
    md.write_score(md.roll_to_stream(good), tmp_path / "songs" / "good.mid")
    (tmp_path / "songs" / "broken.mid").write_bytes(b"MThd this is not a MIDI file")
    md.write_score(md.roll_to_stream(np.zeros((0, 88), np.uint8)), tmp_path / "songs" / "empty.musicxml")
    report = tmp_path / "report.txt"
    with report.open("w") as out:
        data = md.load_files(tmp_path / "songs", 1, transpose=False, report=out)
    text = report.read_text()
    assert data.names == ["good.mid"] and np.array_equal(data.rolls[0], good)
    assert "skipped" in text and "broken.mid" in text and "does not parse" in text
    assert "empty.musicxml" in text and "no notes" in text
    with pytest.raises(md.MusicError, match="none of its 1 file"), (tmp_path / "r2.txt").open("w") as out:
        md.load_files(tmp_path / "songs" / "broken.mid", report=out)


def test_a_users_notes_outside_the_piano_are_reported_by_file(tmp_path):
    part = music21.stream.Part()
    for offset, midi in enumerate([60, 64, 110, 67]):  # 110 is above C8
        part.insert(offset, music21.note.Note(midi, quarterLength=1))
    md.write_score(part, tmp_path / "high.mid")
    report = tmp_path / "report.txt"
    with report.open("w") as out:
        data = md.load_files(tmp_path / "high.mid", 1, transpose=False, report=out)
    assert "high.mid: dropped 1 note(s) outside MIDI 21..108" in report.read_text()
    assert data.dropped == [1] and data.rolls[0].sum() == 3 and data.rolls[0][2].sum() == 0


def test_chorales_are_cached_after_the_first_parse(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    first = md.load_chorales(1, limit=2, progress=None)
    files = list((tmp_path / "music").glob("chorales-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(music21.corpus, "parse", lambda *a, **k: pytest.fail("parsed again"))
    again = md.load_chorales(1, limit=2, progress=None)
    assert again.names == first.names and all(np.array_equal(a, b) for a, b in zip(again.rolls, first.rolls))
    assert again.melodies == first.melodies and again.keys == first.keys
    other_settings = md._cache_file("chorales", {"frames_per_quarter": 2})
    assert other_settings != md._cache_file("chorales", {"frames_per_quarter": 1})


# ----------------------------------------------------------------------------- loss and metrics


def test_nll_is_the_hand_computed_bernoulli_nll():
    logits = torch.tensor([[[2.0, -1.0, 0.0]], [[0.5, 0.5, -3.0]]])  # (N 2, L 1, K 3)
    targets = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    hand = [-(math.log(sig(2.0)) + math.log(1 - sig(-1.0)) + math.log(sig(0.0))),
            -(math.log(1 - sig(0.5)) + math.log(sig(0.5)) + math.log(1 - sig(-3.0)))]
    assert frame_nll(logits, targets).flatten().tolist() == pytest.approx(hand, rel=1e-6)
    assert music_metrics(8.8)["nll_per_note"] == pytest.approx(0.1)
    # on where p > 0.5: frame 1 p = (.88, .27, .50) -> key 0 (hit), key 2 missed (p = .5 is not > .5);
    # frame 2 p = (.62, .62, .05) -> key 0 a false alarm, key 1 a hit
    tp, fp, fn = frame_counts(logits, targets).tolist()
    assert (tp, fp, fn) == (2, 1, 1)
    assert frame_accuracy(tp, fp, fn) == pytest.approx(2 / 4)
    assert frame_counts(logits, targets, mask=torch.tensor([[True], [False]])).tolist() == [1, 0, 1]


def test_task_loss_averages_real_frames_and_ignores_padding(tmp_path):
    task = get_task("music")(load_config(recipe(tmp_path)))
    task.assets = {"form": "roll", "frames_per_quarter": 1, "keys": 88}
    model = task.build_model()
    rolls = [np.eye(88, dtype=np.uint8)[:3], np.eye(88, dtype=np.uint8)[5:10]]
    from rnnkit.tasks.music import RollBatches

    batch = next(iter(RollBatches(rolls, 2)))
    assert batch.inputs.shape == (2, 5, 88) and batch.lengths.tolist() == [3, 5] and batch.size == 8
    assert torch.equal(batch.inputs[1, 1:], batch.targets[1, :-1]) and batch.inputs[:, 0].sum() == 0
    model.eval()
    with torch.no_grad():
        loss = task.compute_loss(model, batch, None).loss
        logits, _ = model(batch.inputs)
    by_hand = (frame_nll(logits[0, :3], batch.targets[0, :3]).sum() + frame_nll(logits[1], batch.targets[1]).sum()) / 8
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)
    metrics = task.summarize({"loss": float(loss)})
    assert metrics["nll_per_frame"] == pytest.approx(float(loss)) and 0 <= metrics["frame_accuracy"] <= 1


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.path"):
        load_config(recipe(tmp_path, data={"source": "files"}))
    with pytest.raises(ConfigError, match="did you mean 'gru'"):
        load_config(recipe(tmp_path, model={"cell": "gruu"}))


# ----------------------------------------------------------------------------- train, eval, generate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained for 40 epochs on the training pieces of the first six chorales."""
    tmp = tmp_path_factory.mktemp("music-run")
    import os

    os.environ["RNNKIT_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    path = recipe(tmp, trainer={"max_epochs": 40})
    assert main(["train", path]) == 0
    return tmp / "run"


def test_a_tiny_model_lowers_its_nll(trained):
    import csv

    rows = list(csv.DictReader((trained / "train.csv").open()))
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert first == pytest.approx(88 * math.log(2), rel=0.1)  # p ≈ 0.5 everywhere at the start
    assert last < 12.0 < first / 4  # below the per-key unigram level of these pieces (~15)


def test_eval_reports_nll_per_frame_per_note_and_frame_accuracy(trained, capsys):
    capsys.readouterr()
    assert main(["eval", str(trained), "--split", "train"]) == 0
    out = capsys.readouterr().out
    values = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[1:] if line[:1].isalpha()
              and not line.startswith("pieces")}
    assert values["nll_per_note"] == pytest.approx(values["nll_per_frame"] / 88, abs=1e-4)
    assert values["nll_per_frame"] < 12.0 and 0 < values["frame_accuracy"] <= 1


def test_generate_continues_the_prime_and_writes_midi_that_parses_back(trained, tmp_path, capsys):
    out_mid, out_xml, png = tmp_path / "c.mid", tmp_path / "c.musicxml", tmp_path / "roll.png"
    assert main(["generate", str(trained), "--prime-frames", "8", "--length", "12", "--seed", "3",
                 "--out", str(out_mid), "--out", str(out_xml), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and out_xml.stat().st_size > 0
    task, model, _, _ = load_run(trained)
    args = Namespace(prime_frames=8, length=12, split="test", piece="", index=0, prime_file=None, out=None,
                     plot=None, temperature=1.0, greedy=False, seed=3, tempo=80, quiet=True)
    result = task.generate(model, args)
    roll = result["output"]
    test = task.splits["test"]
    assert roll.shape == (20, 88) and np.array_equal(roll[:8], test.rolls[0][:8])  # the prime, exactly
    again = md.notes_to_roll(md.score_notes(music21.converter.parse(out_mid)), 1)[0]
    padded = np.zeros_like(roll)
    padded[: len(again)] = again
    assert np.array_equal(padded, roll)  # the file holds the same notes (same seed, same roll)


def test_generate_from_silence_needs_no_data(trained, tmp_path, monkeypatch):
    task, model, _, _ = load_run(trained)
    monkeypatch.setattr(task, "prepare_data", lambda: pytest.fail("loaded the corpus"))
    args = Namespace(prime_frames=0, length=6, split="test", piece="", index=0, prime_file=None, out=None,
                     plot=None, temperature=1.0, greedy=True, seed=None, tempo=80, quiet=True)
    result = task.generate(model, args)
    assert result["name"] == "silence" and result["output"].shape == (6, 88)


def test_generate_refuses_without_outputs_and_for_other_tasks(trained, capsys):
    assert main(["generate", str(trained)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["generate", str(trained), "--out", "x.mid", "--piece", "bach/nope"]) == 1
    assert "bach/nope" in capsys.readouterr().err


def test_melody_task_trains_and_generates_events(tmp_path):
    path = recipe(tmp_path, data={"form": "melody"}, model={"hidden_size": 16}, trainer={"max_epochs": 3})
    assert main(["train", path]) == 0
    task, model, _, _ = load_run(tmp_path / "run")
    assert "<eos>" in task.assets["tokens"] and task.assets["tokens"][0] == "<unk>"
    args = Namespace(prime_frames=4, length=10, split="train", piece="", index=0, prime_file=None,
                     out=[str(tmp_path / "m.mid")], plot=None, temperature=1.0, greedy=False, seed=0, tempo=80,
                     quiet=True)
    result = task.generate(model, args)
    events = result["output"]
    assert events[:4] == task.splits["train"].melodies[0][:4] and 4 < len(events) <= 14
    assert all((p is None or 21 <= p <= 108) and d > 0 for p, d in events)
    parsed = music21.converter.parse(tmp_path / "m.mid").flatten().notes
    assert [n.pitch.midi for n in parsed] == [p for p, _ in events if p is not None]


def test_input_dropout_drops_input_notes_only_while_training():
    from rnnkit.models.polyphonic import PolyphonicModel

    torch.manual_seed(0)
    plain = PolyphonicModel(keys=12, cell="lstm", hidden_size=8)
    dropped = PolyphonicModel(keys=12, cell="lstm", hidden_size=8, input_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    roll = (torch.rand(3, 10, 12) < 0.3).float()
    plain.eval(), dropped.eval()
    assert torch.equal(plain(roll)[0], dropped(roll)[0])  # evaluation: the input as it is
    assert torch.equal(plain.step(roll[:, 0])[0], dropped.step(roll[:, 0])[0])
    dropped.train()
    seen = []
    dropped.rnn.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    dropped(roll)
    kept = seen[0][roll == 1]
    assert set(kept.unique().tolist()) <= {0.0, 2.0} and 0.3 < (kept == 0).float().mean() < 0.7
    assert (seen[0][roll == 0] == 0).all()


def test_ensemble_predicts_the_members_mean_probability_and_steps_as_it_runs():
    from rnnkit.models.polyphonic import PolyphonicEnsemble, PolyphonicModel

    torch.manual_seed(0)
    members = [PolyphonicModel(keys=12, cell=c, hidden_size=8) for c in ("lstm", "gru", "lstm")]
    for m in members:
        torch.nn.init.normal_(m.head.bias, std=8.0)  # probabilities near 0 and 1: the log-space mean must hold
    ensemble = PolyphonicEnsemble(members).eval()
    roll = (torch.rand(2, 9, 12) < 0.3).float()
    logits, states = ensemble(roll)
    mean_p = torch.stack([torch.sigmoid(m(roll)[0].double()) for m in members]).mean(0)
    torch.testing.assert_close(torch.sigmoid(logits.double()), mean_p, rtol=1e-5, atol=1e-7)
    assert torch.isfinite(logits).all() and len(states) == 3
    y = (torch.rand(2, 9, 12) < 0.3).float()
    each = torch.stack([frame_nll(m(roll)[0], y) for m in members]).double()  # (E, N, L)
    mixed = PolyphonicEnsemble.mixture_nll(ensemble(roll, members=True)[0], y).double()
    torch.testing.assert_close(mixed, -torch.log(torch.exp(-each).mean(0)), rtol=1e-5, atol=1e-5)
    assert (mixed <= each.mean(0) + 1e-5).all()  # Jensen, per frame
    stepped, state = [], None  # step by step gives the same logits as the whole sequence
    for t in range(9):
        out, state = ensemble.step(roll[:, t], state)
        stepped.append(out)
    torch.testing.assert_close(torch.stack(stepped, 1), logits, rtol=1e-4, atol=1e-4)
    single = PolyphonicEnsemble(members[:1]).eval()
    torch.testing.assert_close(single(roll)[0], members[0](roll)[0], rtol=1e-5, atol=1e-5)
    cont = ensemble.continue_roll(roll[:, :3], 5, generator=torch.Generator().manual_seed(0))
    assert cont.shape == (2, 8, 12) and torch.equal(cont[:, :3], roll[:, :3])
    # sampling picks one member per frame: every drawn frame is one some member could draw
    certain = [PolyphonicModel(keys=12, cell="lstm", hidden_size=4) for _ in range(2)]
    for m, bias in zip(certain, (-30.0, 30.0)):  # all keys off, all keys on
        torch.nn.init.zeros_(m.head.weight)
        torch.nn.init.constant_(m.head.bias, bias)
    frames = PolyphonicEnsemble(certain).continue_roll(torch.zeros(64, 0, 12), 3,
                                                       generator=torch.Generator().manual_seed(1))
    per_frame = frames.sum(-1)  # (64, 3): 0 or 12, never a mix of the two members' keys
    assert set(per_frame.unique().tolist()) == {0.0, 12.0}
    greedy = PolyphonicEnsemble(certain[:1] * 2 + certain[1:]).continue_roll(torch.zeros(1, 0, 12), 2, greedy=True)
    assert greedy.sum() == 0  # marginal 1/3 per key: off


def test_ensemble_trains_each_member_on_its_own_loss_evaluates_and_generates(tmp_path, capsys):
    path = recipe(tmp_path, model={"ensemble": 2}, trainer={"max_epochs": 2})
    task = get_task("music")(load_config(path))
    task.assets = {"form": "roll", "frames_per_quarter": 1, "keys": 88}
    model = task.build_model()
    from rnnkit.tasks.music import RollBatches

    batch = next(iter(RollBatches([np.eye(88, dtype=np.uint8)[:6], np.eye(88, dtype=np.uint8)[9:13]], 2)))
    model.train()  # no dropout in this recipe: both passes see the same members
    with torch.no_grad():
        loss = task.compute_loss(model, batch, None).loss
        members, _ = model(batch.inputs, members=True)
        mask = (torch.arange(6)[None] < batch.lengths[:, None])
        own = [float((frame_nll(m, batch.targets) * mask).sum() / batch.num_items) for m in members]
        assert float(loss) == pytest.approx(sum(own) / 2, rel=1e-5)  # training: each member's own loss
        model.eval()
        loss = task.compute_loss(model, batch, None).loss
        from rnnkit.models.polyphonic import PolyphonicEnsemble

        mixed = float((PolyphonicEnsemble.mixture_nll(members, batch.targets) * mask).sum() / batch.num_items)
        assert float(loss) == pytest.approx(mixed, rel=1e-5) and float(loss) <= sum(own) / 2 + 1e-5
    assert main(["train", path]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "test"]) == 0
    assert "nll_per_frame" in capsys.readouterr().out
    _, trained_model, _, _ = load_run(tmp_path / "run")
    assert len(trained_model.members) == 2
    assert main(["generate", str(tmp_path / "run"), "--prime-frames", "2", "--length", "6",
                 "--out", str(tmp_path / "e.mid")]) == 0
    assert (tmp_path / "e.mid").stat().st_size > 0
    with pytest.raises(ConfigError, match="model.ensemble"):
        task.assets = {"form": "melody", "tokens": ["<unk>", "<eos>"]}
        task.build_model()


def test_autoregressive_output_is_a_normalised_distribution_over_whole_frames():
    from itertools import product

    from rnnkit.models.polyphonic import PolyphonicModel

    torch.manual_seed(0)
    model = PolyphonicModel(keys=5, cell="gru", hidden_size=6, output="autoregressive").eval()
    torch.nn.init.normal_(model.within, std=2.0)
    past = (torch.rand(2, 3, 5) < 0.4).float()
    every = torch.tensor(list(product([0.0, 1.0], repeat=5)))  # all 32 frames
    total = torch.zeros(2, 3, dtype=torch.float64)
    for frame in every:
        logits, _ = model(past, targets=frame.expand(2, 3, 5))
        total += torch.exp(-frame_nll(logits, frame.expand(2, 3, 5)).double())
    torch.testing.assert_close(total, torch.ones(2, 3, dtype=torch.float64), rtol=0, atol=1e-6)  # fp32 NLLs
    with pytest.raises(ValueError, match="needs the next frames"):
        model(past)


def test_autoregressive_output_starts_as_the_independent_model_and_samples_key_by_key():
    from rnnkit.models.polyphonic import PolyphonicModel

    torch.manual_seed(1)
    plain = PolyphonicModel(keys=6, cell="lstm", hidden_size=5)
    chained = PolyphonicModel(keys=6, cell="lstm", hidden_size=5, output="autoregressive")
    chained.load_state_dict(plain.state_dict(), strict=False)
    roll = (torch.rand(2, 4, 6) < 0.5).float()
    torch.testing.assert_close(chained(roll, targets=roll)[0], plain(roll)[0])
    with torch.no_grad():  # key 0: a coin; key 1 copies key 0; keys 2..5 off
        torch.nn.init.zeros_(chained.head.weight)
        chained.head.bias.copy_(torch.tensor([0.0, -20.0, -30.0, -30.0, -30.0, -30.0]))
        chained.within[1, 0] = 40.0
        chained.within[0, 1] = 40.0  # above the diagonal: masked, key 0 never sees key 1
    frames = chained.continue_roll(torch.zeros(400, 0, 6), 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frames[..., 1], frames[..., 0]) and frames[..., 2:].sum() == 0
    assert 0.4 < frames[..., 0].mean() < 0.6
    with torch.no_grad():
        chained.head.bias[0] = 1.0  # key 0 on greedily, so key 1 follows
    greedy = chained.greedy_frames(roll)
    assert (greedy[..., :2] == 1).all() and greedy[..., 2:].sum() == 0


def test_autoregressive_output_trains_evaluates_and_generates(tmp_path, capsys):
    path = recipe(tmp_path, model={"output": "autoregressive"}, trainer={"max_epochs": 3})
    assert main(["train", path]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert "nll_per_frame" in out and "frame_accuracy" in out
    assert main(["generate", str(tmp_path / "run"), "--prime-frames", "2", "--length", "4",
                 "--out", str(tmp_path / "a.mid")]) == 0
    assert music21.converter.parse(tmp_path / "a.mid") is not None
    with pytest.raises(ConfigError, match="model.ensemble"):
        task = get_task("music")(load_config(recipe(tmp_path, model={"output": "autoregressive", "ensemble": 2})))
        task.assets = {"form": "roll", "frames_per_quarter": 1, "keys": 88}
        task.build_model()
