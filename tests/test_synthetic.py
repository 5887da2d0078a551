"""rnnkit.data.synthetic: each generator's targets follow its definition; seeds reproduce."""
import numpy as np
import pytest

from rnnkit.data.sequences import IGNORE
from rnnkit.data.synthetic import (ADDING_BASELINE_MSE, SYNTHETIC, adding, copy, larger, make_synthetic, order,
                                   parity)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_parity_final_bit_and_running_parity_follow_the_xor_table():
    final = parity(rng(), 50, 12, min_length=3)
    running = parity(rng(), 50, 12, min_length=3, per_step=True)
    assert final.kind == "class" and running.kind == "tag" and final.classes == ["0", "1"]
    for bits_seq, y, steps in zip(final.sequences, final.targets, running.targets):
        bits = bits_seq[:, 0].astype(int)
        assert set(bits) <= {0, 1} and 3 <= len(bits) <= 12
        acc = 0
        for t, b in enumerate(bits):
            acc ^= b  # the XOR table, one step at a time
            assert steps[t] == acc
        assert y == acc
    assert len(set(final.lengths)) > 1  # min_length gives variable lengths


def test_adding_targets_are_the_sum_of_the_two_marked_values():
    data = adding(rng(1), 200, 30)
    for x, y in zip(data.sequences, data.targets):
        marked = np.flatnonzero(x[:, 1])
        assert len(marked) == 2 and marked[0] < 15 <= marked[1]  # one in each half
        assert y == pytest.approx(x[marked, 0].sum())
    # always answering 1 scores about Var(U1 + U2) = 1/6
    assert np.mean((np.asarray(adding(rng(2), 4000, 20).targets) - 1) ** 2) == pytest.approx(ADDING_BASELINE_MSE, abs=0.01)


def test_larger_and_order_labels():
    data = larger(rng(), 100, 9)
    for x, y in zip(data.sequences, data.targets):
        assert y == int(x[:, 0].sum() > x[:, 1].sum())
    data = order(rng(), 100, 10, vocab=6)
    for x, y in zip(data.sequences, data.targets):
        tokens = x.argmax(1)
        assert x.shape == (10, 6) and (tokens == 0).sum() == 1 and (tokens == 1).sum() == 1
        assert y == int(np.flatnonzero(tokens == 0)[0] < np.flatnonzero(tokens == 1)[0])
    assert 0.3 < np.mean(data.targets) < 0.7


def test_copy_recalls_the_symbols_after_the_delay_and_ignores_other_steps():
    data = copy(rng(), 20, delay=7, symbols=3, alphabet=4)
    for x, y in zip(data.sequences, data.targets):
        assert x.shape == (3 + 7 + 3, 6)
        tokens = x.argmax(1)
        assert (tokens[3:10] == 4).all() and tokens[10] == 5 and (tokens[11:] == 4).all()  # blanks, go, blanks
        assert (y[:-3] == IGNORE).all()
        np.testing.assert_array_equal(y[-3:], tokens[:3])


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_data_and_errors(name):
    a = make_synthetic(name, rng(5), 4, length=8, per_step=True)
    b = make_synthetic(name, rng(5), 4, length=8, per_step=True)
    c = make_synthetic(name, rng(6), 4, length=8, per_step=True)
    for s, t in zip(a.sequences, b.sequences):
        np.testing.assert_array_equal(s, t)
    assert any(not np.array_equal(s, t) for s, t in zip(a.sequences, c.sequences))
    a.check(name)  # well-formed: no NaN, lengths and labels agree


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown synthetic"):
        make_synthetic("xor", rng(), 1, length=5)
    with pytest.raises(ValueError, match="at least 2"):
        adding(rng(), 1, 1)
    with pytest.raises(ValueError, match="vocabulary"):
        order(rng(), 1, 5, vocab=2)
