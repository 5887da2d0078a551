"""rnnkit.data.sequences: aeon's bundled sets offline, digits, user files, splits, scaling, bad input."""
import numpy as np
import pytest
import torch

from rnnkit.data.sequences import (IGNORE, FileLayout, Scaler, SequenceBatches, SequenceDataError, SequenceSet,
                                   aeon_bundled, encode_labels, kfold_split, load_aeon, load_digits_rows,
                                   load_file, pad_batch, save_npz, stratified_split)


def small_set(kind="class"):
    seqs = [np.arange(L * 2, dtype=np.float32).reshape(L, 2) + i for i, L in enumerate([3, 1, 4, 2])]
    if kind == "tag":
        return SequenceSet(seqs, [np.arange(len(s)) % 2 for s in seqs], ["a", "b"], "tag", ["w", "x", "y", "z"])
    return SequenceSet(seqs, np.array([0, 1, 1, 0]), ["a", "b"], "class", ["w", "x", "y", "z"])


# ----------------------------------------------------------------------------- aeon, offline


def test_japanese_vowels_from_aeon_bundle():
    pytest.importorskip("aeon")
    assert {"JapaneseVowels", "BasicMotions", "GunPoint", "ArrowHead", "PickupGestureWiimoteZ"} <= set(aeon_bundled())
    train = load_aeon("JapaneseVowels", "train")
    test = load_aeon("JapaneseVowels", "test", classes=train.classes)
    assert (len(train), len(test)) == (270, 370)
    assert train.classes == [str(k) for k in range(1, 10)] and train.input_size == 12
    lengths = np.concatenate([train.lengths, test.lengths])
    assert lengths.min() == 7 and lengths.max() == 29  # variable lengths are kept, not truncated
    train.check(), test.check()


def test_aeon_unknown_and_not_bundled_names_are_refused_without_downloading(tmp_path):
    pytest.importorskip("aeon")
    with pytest.raises(SequenceDataError, match="unknown data set 'JapaneseVowel'.*did you mean 'JapaneseVowels'.*"
                                                "BasicMotions"):
        load_aeon("JapaneseVowel", "train")
    with pytest.raises(SequenceDataError, match="'FordA' is not available offline.*never does.*data.path"):
        load_aeon("FordA", "train")
    with pytest.raises(SequenceDataError, match="not available in"):
        load_aeon("FordA", "train", path=tmp_path)  # an empty directory of .ts files


def test_digits_row_by_row():
    pytest.importorskip("sklearn")
    digits = load_digits_rows()
    assert len(digits) == 1797 and digits.sequences[0].shape == (8, 8) and len(digits.classes) == 10


# ----------------------------------------------------------------------------- user files


def test_npz_round_trip_with_ragged_lengths(tmp_path):
    data = small_set()
    save_npz(tmp_path / "d.npz", data)
    back = load_file(tmp_path / "d.npz")
    assert back.ids == data.ids and back.classes == ["0", "1"]
    for a, b in zip(back.sequences, data.sequences):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.targets, data.targets)
    tags = small_set("tag")
    save_npz(tmp_path / "t.npz", tags)
    back = load_file(tmp_path / "t.npz", kind="tag")
    for a, b in zip(back.targets, tags.targets):
        np.testing.assert_array_equal(a, b)


def test_csv_long_layout_sorted_by_step_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("seq,t,f1,f2,cls\n"
                    "a,1,1.0,2.0,cat\n"
                    "b,0,5.0,6.0,dog\n"
                    "a,0,3.0,4.0,cat\n")
    data = load_file(path, layout=FileLayout(id_column="seq", label_column="cls", step_column="t"))
    assert data.ids == ["a", "b"] and data.classes == ["cat", "dog"]
    np.testing.assert_array_equal(data.sequences[0], [[3, 4], [1, 2]])
    np.testing.assert_array_equal(data.targets, [0, 1])
    tagged = load_file(path, kind="tag", layout=FileLayout("seq", "cls", "t"))
    assert [list(t) for t in tagged.targets] == [[0, 0], [1]]


def test_labels_sort_numerically_and_unknown_labels_are_named():
    idx, classes = encode_labels(["10", "2", "1", 2.0])
    assert classes == ["1", "2", "10"] and list(idx) == [2, 1, 0, 1]
    with pytest.raises(SequenceDataError, match=r"\['7'\] are not among"):
        encode_labels(["7"], classes)


def test_bad_input_is_named(tmp_path):
    seqs = [np.ones((3, 2), np.float32), np.ones((2, 2), np.float32)]
    with pytest.raises(SequenceDataError, match="2 sequences but 3 labels"):
        SequenceSet(seqs, np.array([0, 1, 0]), ["a", "b"]).check()
    bad = [seqs[0].copy(), seqs[1]]
    bad[0][1, 1] = np.nan
    with pytest.raises(SequenceDataError, match="sequence '0' has 1 NaN.*step 1, feature 1"):
        SequenceSet(bad, np.array([0, 1]), ["a", "b"]).check()
    with pytest.raises(SequenceDataError, match="sequence '1' has length 0"):
        SequenceSet([seqs[0], np.zeros((0, 2), np.float32)], np.array([0, 1]), ["a", "b"]).check()
    with pytest.raises(SequenceDataError, match="3 steps but 2 step labels"):
        SequenceSet(seqs, [np.zeros(2, int), np.zeros(2, int)], ["a"], "tag").check()
    np.savez(tmp_path / "m.npz", x=np.ones((3, 4, 2)), y=np.array([0, 1]))
    with pytest.raises(SequenceDataError, match="3 sequences but 2 labels"):
        load_file(tmp_path / "m.npz")
    (tmp_path / "c.csv").write_text("id,f,label\na,1,x\na,2,y\n")
    with pytest.raises(SequenceDataError, match="'a' has 2 different labels.*task 'tag'"):
        load_file(tmp_path / "c.csv")
    (tmp_path / "n.csv").write_text("id,f\na,1\n")
    with pytest.raises(SequenceDataError, match="no label column 'label'"):
        load_file(tmp_path / "n.csv")
    with pytest.raises(SequenceDataError, match="expected a .npz or .csv"):
        (tmp_path / "d.json").write_text("{}")
        load_file(tmp_path / "d.json")


# ----------------------------------------------------------------------------- splits, scaling, batches


def test_stratified_and_kfold_splits():
    labels = np.repeat(np.arange(3), [10, 6, 2])
    keep, held = stratified_split(labels, len(labels), 0.2, seed=0)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 18
    assert set(labels[held]) == {0, 1, 2}  # every class with 2+ members is represented
    seen = []
    for fold in range(3):
        train, valid = kfold_split(labels, 18, 3, fold, seed=0)
        assert len(np.intersect1d(train, valid)) == 0
        seen.extend(valid)
    assert sorted(seen) == list(range(18))  # the folds partition the set


def test_contiguous_kfold_cuts_each_class_into_consecutive_blocks_in_file_order():
    labels = np.array([0, 1, 0, 0, 1, 2, 0, 1, 0, 2, 1, 0, 1, 2])  # classes interleaved, in recording order
    seen = []
    for fold in range(3):
        train, valid = kfold_split(labels, len(labels), 3, fold, seed=fold, contiguous=True)
        assert len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == len(labels)
        for c in range(3):
            members = np.flatnonzero(labels == c)
            np.testing.assert_array_equal(valid[labels[valid] == c], np.array_split(members, 3)[fold])
        seen.extend(valid)
    assert sorted(seen) == list(range(len(labels)))  # the folds partition the set
    first = kfold_split(labels, len(labels), 3, 0, seed=0, contiguous=True)[1]
    np.testing.assert_array_equal(first, [0, 1, 2, 4, 5])  # each class's first third; the seed plays no part
    np.testing.assert_array_equal(kfold_split(labels, len(labels), 3, 0, seed=7, contiguous=True)[1], first)
    np.testing.assert_array_equal(kfold_split(None, 6, 3, 2, seed=0, contiguous=True)[1], [4, 5])


def test_scaler_fits_the_training_split_only_and_round_trips(tmp_path):
    train = small_set()
    scaler = Scaler.fit(train)
    steps = np.concatenate(train.sequences)
    np.testing.assert_allclose(scaler.mean, steps.mean(0))
    scaled = np.concatenate(scaler.apply(train).sequences)
    np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(0), 1, atol=1e-5)
    scaler.save(tmp_path / "s.json")
    np.testing.assert_allclose(Scaler.load(tmp_path / "s.json").std, scaler.std)
    with pytest.raises(SequenceDataError, match="3 features; this model was trained on 2"):
        scaler.apply(SequenceSet([np.ones((2, 3), np.float32)], np.array([0]), ["a"]))


def test_padded_batches_carry_lengths_and_ignore_padding():
    tags = small_set("tag")
    p = pad_batch(tags, [0, 1, 2])
    assert p.inputs.shape == (3, 4, 2) and p.lengths.tolist() == [3, 1, 4]
    assert (p.targets[1, 1:] == IGNORE).all() and p.size == 8
    assert (p.inputs[1, 1:] == 0).all()
    g = torch.Generator().manual_seed(0)
    batches = list(SequenceBatches(small_set(), 3, g))
    assert len(batches) == 2 and sum(len(b.lengths) for b in batches) == 4
