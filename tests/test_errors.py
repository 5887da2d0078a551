"""Bad input gets a ValueError whose message names the problem (docs/core.md, Errors):
"expected a 3-D input", "input feature size", "state", "lengths", "unknown cell",
"unknown variant", "additive"."""
import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit.cells import make_cell
from rnnkit.layers import Recurrent

N, L, D, H = 3, 5, 4, 6


def raises(phrase):
    return pytest.raises(ValueError, match=re.escape(phrase))


def lstm(**options):
    return Recurrent(cell="lstm", input_size=D, hidden_size=H, **options)


# ---- input ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(N, D), (D,), (N, L, D, 1)], ids=["2-D", "1-D", "4-D"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_input_rank(cell, shape):
    layer = Recurrent(cell=cell, input_size=D, hidden_size=H)
    with raises("expected a 3-D input"):
        layer(torch.randn(shape))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("options", [{"cell": "lstm"}, {"cell": "lstm", "variant": "peephole"},
                                     {"cell": "gru", "num_layers": 2}], ids=["lstm", "peephole", "gru2"])
def test_input_feature_size(options, batch_first):
    layer = Recurrent(input_size=D, hidden_size=H, batch_first=batch_first, **options)
    with raises("input feature size"):
        layer(torch.randn(N, L, D + 1))


def test_packed_input_feature_size():
    packed = pack_padded_sequence(torch.randn(N, L, D + 1), torch.tensor([5, 3, 2]), batch_first=True)
    with raises("input feature size"):
        lstm()(packed)


def test_step_input_feature_size():
    with raises("input feature size"):
        lstm().step(torch.randn(N, D + 1))


# ---- state ---------------------------------------------------------------------------

def good_state(layers_dirs=1, entries=2):
    return tuple(torch.zeros(layers_dirs, N, H) for _ in range(entries))


@pytest.mark.parametrize("options, state", [
    ({}, good_state(entries=1)),                       # LSTM needs (h, c)
    ({}, good_state(entries=3)),
    ({"skip": 3}, good_state(entries=2)),              # skip 3 also needs 2 older h
    ({"variant": "fgr"}, good_state(entries=2)),       # fgr: (h, c, i, f, o)
], ids=["lstm-one", "lstm-three", "skip3-missing-history", "fgr-two"])
def test_state_wrong_count(options, state):
    with raises("state"):
        lstm(**options)(torch.randn(N, L, D), state)


def test_gru_state_wrong_count():
    layer = Recurrent(cell="gru", input_size=D, hidden_size=H)
    with raises("state"):
        layer(torch.randn(N, L, D), good_state(entries=2))


@pytest.mark.parametrize("options, bad", [
    ({}, (2, N, H)),                                   # too many layers·dirs
    ({"num_layers": 2, "bidirectional": True}, (2, N, H)),
    ({}, (1, N + 1, H)),                               # wrong batch
    ({}, (1, N, H + 1)),                               # wrong hidden size
    ({}, (N, H)),                                      # missing the layer axis
], ids=["layers", "layers-bi", "batch", "hidden", "2-D"])
def test_state_wrong_shape(options, bad):
    layer = lstm(**options)
    layers_dirs = 4 if options else 1
    good = torch.zeros(layers_dirs, N, H)
    for state in ((torch.zeros(bad), good), (good, torch.zeros(bad))):
        with raises("state"):
            layer(torch.randn(N, L, D), state)


def test_step_state_wrong_shape():
    with raises("state"):
        lstm().step(torch.randn(N, D), (torch.zeros(1, N, H + 1), torch.zeros(1, N, H + 1)))


# ---- lengths -------------------------------------------------------------------------

@pytest.mark.parametrize("lengths", [
    [L + 1, 2, 3],   # longer than L
    [5, 0, 3],       # zero
    [5, -1, 3],      # negative
    [5, 3],          # too few
    [5, 3, 2, 1],    # too many
], ids=["too-long", "zero", "negative", "too-few", "too-many"])
@pytest.mark.parametrize("options", [{}, {"variant": "peephole", "bidirectional": True}], ids=["fused", "loop"])
def test_bad_lengths(options, lengths):
    with raises("lengths"):
        lstm(**options)(torch.randn(N, L, D), lengths=torch.tensor(lengths))


# ---- construction --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lstmm", "transformer", "GRU "])
def test_unknown_cell(name):
    with raises("unknown cell"):
        make_cell(name, D, H)
    with raises("unknown cell"):
        Recurrent(cell=name, input_size=D, hidden_size=H)


@pytest.mark.parametrize("cell, variant", [("lstm", "vanilla"), ("lstm", "coupled"), ("gru", "minimal"),
                                           ("gru", "lru")])
def test_unknown_variant(cell, variant):
    with raises("unknown variant"):
        make_cell(cell, D, H, variant=variant)
    with raises("unknown variant"):
        Recurrent(cell=cell, input_size=D, hidden_size=H, variant=variant)


def test_additive_needs_input_size_equal_to_hidden_size():
    with raises("additive"):
        make_cell("additive", D, H)
    with raises("additive"):
        Recurrent(cell="additive", input_size=D, hidden_size=H)


def test_additive_cannot_stack_bidirectionally():
    """A second additive layer would get 2H inputs for H hidden units."""
    with raises("additive"):
        Recurrent(cell="additive", input_size=H, hidden_size=H, num_layers=2, bidirectional=True)
