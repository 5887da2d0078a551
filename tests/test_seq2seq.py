"""The encoder-decoder and attention: shapes, masking, step/forward agreement, scheduled sampling, learning."""
import pytest
import torch

from rnnkit.data.pairs import BOS_ID, EOS_ID, IGNORE, PairBatches, PairVocab, make_reversal
from rnnkit.decode import BeamSearch, Greedy, decode
from rnnkit.models.attention import Attention
from rnnkit.models.seq2seq import Seq2Seq

CONFIGS = [  # (cell, attention, input_feeding, bidirectional, num_layers)
    ("lstm", "additive", True, True, 1),
    ("gru", "dot", False, False, 2),
    ("lstm", "general", False, True, 2),
    ("rnn", "none", True, True, 1),
    ("gru", "additive", True, False, 1),
]


def model_of(cell, attention, feeding, bidirectional, layers, hidden=8, vocab=11):
    torch.manual_seed(0)
    return Seq2Seq(vocab, vocab + 2, cell, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional,
                   attention=attention, input_feeding=feeding).eval()


def sources(n=3, length=6, vocab=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(4, vocab, (n, length), generator=g)
    lengths = torch.tensor([length, 2, 4][:n])
    for i, L in enumerate(lengths.tolist()):
        source[i, L:] = 0
    return source, lengths


@pytest.mark.parametrize("cell,attention,feeding,bidirectional,layers", CONFIGS)
def test_shapes_masking_and_padding_do_not_matter(cell, attention, feeding, bidirectional, layers):
    model = model_of(cell, attention, feeding, bidirectional, layers)
    source, lengths = sources()
    target_in = torch.randint(4, 13, (3, 5))
    out = model(source, lengths, target_in)
    assert out.logits.shape == (3, 5, 13)
    if attention == "none":
        assert out.attention is None
    else:
        assert out.attention.shape == (3, 5, 6)
        assert torch.allclose(out.attention.sum(-1), torch.ones(3, 5), atol=1e-6)
        assert (out.attention[1, :, 2:] == 0).all() and (out.attention[2, :, 4:] == 0).all()
    # whatever sits in the padding, and however long it is, the result is the same
    junk = torch.cat([source, torch.randint(4, 11, (3, 3))], dim=1)
    junk[0, 6:] = 0
    again = model(junk, lengths, target_in)
    assert torch.allclose(again.logits, out.logits, atol=1e-5)


@pytest.mark.parametrize("cell,attention,feeding,bidirectional,layers", CONFIGS)
def test_greedy_steps_equal_teacher_forcing_on_their_own_output(cell, attention, feeding, bidirectional, layers):
    model = model_of(cell, attention, feeding, bidirectional, layers)
    source, lengths = sources()
    hyps = decode(model.decode_step, model.start(source, lengths), 3, Greedy(), bos=BOS_ID, eos=EOS_ID,
                  max_length=7, reorder=model.reorder_state)
    for n, [h] in enumerate(hyps):
        target_in = torch.tensor([[BOS_ID] + h.tokens])
        with torch.no_grad():
                logits = model(source[n: n + 1, : lengths[n]], lengths[n: n + 1], target_in).logits[0]  # (T, V)
        chosen = h.tokens + ([EOS_ID] if h.finished else [])
        assert logits.argmax(-1).tolist()[: len(chosen)] == chosen
        log_p = torch.log_softmax(logits, -1)[torch.arange(len(chosen)), chosen].sum()
        assert float(log_p) == pytest.approx(h.log_prob, abs=1e-4)


def test_beam_search_over_the_model_state_agrees_with_greedy_at_width_one():
    model = model_of("lstm", "additive", True, True, 2)
    source, lengths = sources()
    args = dict(bos=BOS_ID, eos=EOS_ID, max_length=7, reorder=model.reorder_state)
    greedy = decode(model.decode_step, model.start(source, lengths), 3, Greedy(), **args)
    beam = decode(model.decode_step, model.start(source, lengths), 3, BeamSearch(1), **args)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]
    five = decode(model.decode_step, model.start(source, lengths), 3, BeamSearch(5, n_best=5), **args)
    for row in five:
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)


def test_scheduled_sampling_at_one_feeds_the_models_own_choices():
    model = model_of("gru", "additive", True, True, 1).train()  # no dropout: training mode is deterministic
    source, lengths = sources()
    gold = torch.randint(4, 13, (3, 6))
    gold[:, 0] = BOS_ID
    own = model(source, lengths, gold, sampling_probability=1.0).logits.argmax(-1)  # (3, 6)
    free = torch.full((3, 1), BOS_ID)
    for _ in range(6):  # free running, feeding back argmax
        free = torch.cat([free, model(source, lengths, free).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(own, free[:, 1:])
    forced = model(source, lengths, gold, sampling_probability=0.0).logits.argmax(-1)
    assert not torch.equal(forced, own)


def test_bridge_only_where_sizes_or_directions_differ():
    assert Seq2Seq(9, 9, "lstm", hidden_size=8, bidirectional=True).bridge is not None
    assert Seq2Seq(9, 9, "lstm", hidden_size=8, bidirectional=False).bridge is None
    assert Seq2Seq(9, 9, "lstm", hidden_size=8, bidirectional=False, encoder_hidden_size=6).bridge is not None


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="dot attention"):
        Attention("dot", 8, 16)
    with pytest.raises(ValueError, match="unknown attention"):
        Seq2Seq(9, 9, attention="bahdanau")
    with pytest.raises(ValueError, match="source must be"):
        Seq2Seq(9, 9, hidden_size=4).start(torch.zeros(3, dtype=torch.long), torch.tensor([3]))


def test_a_tiny_model_learns_to_reverse_strings():
    torch.manual_seed(0)
    train, test = make_reversal(2000, 1, 5, 5, seed=0), make_reversal(200, 1, 5, 5, seed=1)
    vocab = PairVocab.build(train.sources)
    model = Seq2Seq(len(vocab), len(vocab), "gru", hidden_size=32, attention="dot", bidirectional=False,
                    input_feeding=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = 0
    while step < 400:
        for b in PairBatches(train, 32, vocab, vocab, torch.Generator().manual_seed(step)):
            logits = model(b.source, b.lengths, b.target_in).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b.target_out.flatten(),
                                                     ignore_index=IGNORE)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == 400:
                break
    b = next(iter(PairBatches(test, 200, vocab, vocab)))
    hyps = decode(model.decode_step, model.start(b.source, b.lengths), 200, Greedy(), bos=BOS_ID, eos=EOS_ID,
                  max_length=8, reorder=model.reorder_state)
    right = sum(vocab.decode(h[0].tokens) == test.targets[i] for i, h in zip(b.index, hyps))
    assert right / 200 >= 0.9, f"only {right}/200 reversed after 400 steps"
