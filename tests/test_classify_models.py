"""SequenceClassifier, SequenceTagger and WindowMLP: padding never changes the answer."""
import pytest
import torch

from rnnkit.models import SequenceClassifier, SequenceTagger, WindowMLP
from rnnkit.models.classifier import POOLINGS, chrono_init

LENGTHS = [5, 2, 7, 1]
D = 3


def ragged(seed=0, pad_value=0.0):
    """A (4, 7, D) batch whose padding holds `pad_value`, and the sequences alone."""
    g = torch.Generator().manual_seed(seed)
    singles = [torch.randn(1, L, D, generator=g) for L in LENGTHS]
    x = torch.full((len(LENGTHS), max(LENGTHS), D), pad_value)
    for i, s in enumerate(singles):
        x[i, : s.shape[1]] = s[0]
    return x, torch.tensor(LENGTHS), singles


# the fused torch kernels (lstm, gru) and the loop path (peephole lstm, rnn) both take part
ENCODERS = [dict(cell="lstm"), dict(cell="gru", bidirectional=True), dict(cell="lstm", variant="peephole"),
            dict(cell="rnn", num_layers=2, bidirectional=True),
            dict(cell="gru", bidirectional=True, conv_width=3, conv_channels=5),
            dict(cell="gru", bidirectional=True, deltas=True, projection_size=4)]
FCN = dict(cell="gru", bidirectional=True, fcn_channels=(5, 6), fcn_widths=(4, 3))


def trained_norms(model):
    """Run a few training batches so the FCN branch's running statistics are not the identity."""
    model.train()
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 7, D, generator=g) * 2 + 1, None, torch.tensor(LENGTHS))
    return model.eval()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("encoder", ENCODERS, ids=lambda e: "-".join(f"{v}" for v in e.values()))
def test_classifier_ragged_batch_equals_single_sequences(pooling, encoder):
    torch.manual_seed(0)
    model = SequenceClassifier(D, 4, hidden_size=6, pooling=pooling, **encoder).eval()
    x, lengths, singles = ragged(pad_value=7.5)  # garbage in the padding must not leak in
    batch, _ = model(x, None, lengths)
    alone = torch.cat([model(s, None, torch.tensor([s.shape[1]]))[0] for s in singles])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    alone_no_lengths = torch.cat([model(s)[0] for s in singles])
    torch.testing.assert_close(batch, alone_no_lengths, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_classifier_with_fcn_branch_ragged_batch_equals_single_sequences(pooling):
    torch.manual_seed(0)
    model = trained_norms(SequenceClassifier(D, 4, hidden_size=6, pooling=pooling, **FCN))
    x, lengths, singles = ragged(3, pad_value=-5.0)
    batch, _ = model(x, None, lengths)
    alone = torch.cat([model(s)[0] for s in singles])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)


def test_fcn_branch_is_conv_batchnorm_relu_blocks_then_a_mean_over_real_steps():
    """Against a plain loop: each sequence alone, Keras-style 'same' padding (the extra zero after
    the end for even widths), training-mode statistics of the real steps only."""
    from rnnkit.models.classifier import ConvBranch
    torch.manual_seed(0)
    branch = ConvBranch(D, (5, 6), (4, 3))
    x, lengths, singles = ragged(4, pad_value=9.0)
    got = branch(x, lengths)  # training mode: batch statistics
    ys = [s[0].T for s in singles]  # (D, L) each
    for conv, norm, k in zip(branch.convs, branch.norms, branch.widths):
        zs = [torch.nn.functional.conv1d(torch.nn.functional.pad(y, ((k - 1) // 2, k // 2))[None],
                                         conv.weight, conv.bias)[0] for y in ys]  # (C, L) each
        every = torch.cat(zs, dim=1)  # (C, Σ L): the real steps of the batch
        mean, var = every.mean(1, keepdim=True), every.var(1, unbiased=False, keepdim=True)
        ys = [torch.relu((z - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None])
              for z in zs]
    want = torch.stack([y.mean(1) for y in ys])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    unbiased = every.var(1, unbiased=True)
    torch.testing.assert_close(branch.norms[-1].running_var, 0.9 + 0.1 * unbiased)
    torch.testing.assert_close(branch.norms[-1].running_mean, 0.1 * every.mean(1))
    # without lengths, the masked norm is nn.BatchNorm1d's own
    full = torch.randn(3, 6, D)
    plain = ConvBranch(D, (4,), (3,))
    ref = torch.nn.BatchNorm1d(4)
    y = plain.convs[0](torch.nn.functional.pad(full.transpose(1, 2), (1, 1)))
    torch.testing.assert_close(plain(full), torch.relu(ref(y)).mean(2))
    torch.testing.assert_close(plain.norms[0].running_var, ref.running_var)


def test_fcn_branch_trains_and_joins_the_output_layer():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 3, hidden_size=4, pooling="mean", **FCN)
    assert model.head.in_features == 2 * 4 + 6
    out, _ = model(torch.randn(2, 5, D), None, torch.tensor([5, 3]))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="one entry per block"):
        SequenceClassifier(D, 2, fcn_channels=(4, 4), fcn_widths=(3,))
    with pytest.raises(ValueError, match="token ids"):
        SequenceClassifier(10, 2, embedding=True, fcn_channels=(4,), fcn_widths=(3,))


@pytest.mark.parametrize("encoder", ENCODERS[:3] + ENCODERS[4:], ids=["lstm", "bigru", "peephole", "conv-bigru",
                                                                   "deltas-bigru"])
def test_tagger_ragged_batch_equals_single_sequences(encoder):
    torch.manual_seed(0)
    model = SequenceTagger(D, 3, hidden_size=5, **encoder).eval()
    x, lengths, singles = ragged(1, pad_value=-3.0)
    batch, _ = model(x, None, lengths)  # (N, L, K)
    for i, s in enumerate(singles):
        alone, _ = model(s)
        torch.testing.assert_close(batch[i, : s.shape[1]], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["ordered", "bag"])
@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("per_step", [False, True])
def test_window_mlp_ragged_batch_equals_single_sequences(mode, pooling, per_step):
    torch.manual_seed(0)
    model = WindowMLP(D, 3, window=3, hidden_size=8, mode=mode, pooling=pooling, per_step=per_step).eval()
    x, lengths, singles = ragged(2, pad_value=4.0)
    batch, state = model(x, None, lengths)
    assert state is None
    for i, s in enumerate(singles):
        alone, _ = model(s)
        got = batch[i, : s.shape[1]] if per_step else batch[i]
        torch.testing.assert_close(got, alone[0], rtol=1e-5, atol=1e-6)


def test_window_mlp_bag_ignores_order_within_the_window_and_ordered_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 4, D)
    flipped = x.flip(1)
    bag = WindowMLP(D, 2, window=4, mode="bag").eval()
    ordered = WindowMLP(D, 2, window=4, mode="ordered").eval()
    torch.testing.assert_close(bag(x)[0], bag(flipped)[0])
    assert not torch.allclose(ordered(x)[0], ordered(flipped)[0])


def test_attention_weights_are_a_distribution_over_real_steps():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 2, hidden_size=4, pooling="attention").eval()
    x, lengths, _ = ragged()
    w = model.attention_weights(x, lengths)  # (N, L)
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    for i, L in enumerate(LENGTHS):
        assert (w[i, L:] == 0).all()
    with pytest.raises(ValueError, match="attention"):
        SequenceClassifier(D, 2, pooling="mean").attention_weights(x, lengths)


def test_meanmax_pooling_is_the_mean_and_the_max_over_real_steps_side_by_side():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 3, cell="gru", hidden_size=5, bidirectional=True, pooling="meanmax").eval()
    assert model.head.in_features == 20  # 2 directions x 5 units, mean and max
    x, lengths, singles = ragged(pad_value=100.0)  # a padded max or mean would show the 100s
    h, _ = model.encoder(x, None, lengths)
    pooled = model.pool(h, lengths)
    for i, L in enumerate(LENGTHS):
        torch.testing.assert_close(pooled[i], torch.cat([h[i, :L].mean(0), h[i, :L].amax(0)]))
    torch.testing.assert_close(model(x, None, lengths)[0], model.head(pooled))


def test_meanstd_pooling_is_the_mean_and_the_standard_deviation_over_real_steps():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 3, cell="gru", hidden_size=5, bidirectional=True, pooling="meanstd").eval()
    assert model.head.in_features == 20  # 2 directions x 5 units, mean and standard deviation
    x, lengths, singles = ragged(pad_value=100.0)  # padding in the statistics would show the 100s
    h, _ = model.encoder(x, None, lengths)
    pooled = model.pool(h, lengths)
    for i, L in enumerate(LENGTHS):
        std = h[i, :L].double().var(0, unbiased=False).clamp(min=1e-5).sqrt().float()
        torch.testing.assert_close(pooled[i], torch.cat([h[i, :L].mean(0), std]))
    one = model.pool(h[:1, :1], torch.tensor([1]))  # one step: no spread, the floor
    torch.testing.assert_close(one[0, 10:], torch.full((10,), 1e-5 ** 0.5))
    pooled.sum().backward()  # finite gradients, the floor included
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_deltas_feed_each_step_its_difference_from_the_step_before():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 2, cell="gru", hidden_size=4, deltas=True)
    assert model.encoder.rnn.cells[0].input_size == 2 * D
    x = torch.randn(2, 5, D)
    want = torch.cat([x, torch.cat([torch.zeros(2, 1, D), x[:, 1:] - x[:, :-1]], 1)], -1)  # (2, 5, 2D)
    ours, _ = model.encoder(x)
    torch.testing.assert_close(ours, model.encoder.rnn(want)[0])
    first = torch.cat([x[:, :1], torch.zeros(2, 1, D)], -1)  # step 1 reads itself and zero differences
    torch.testing.assert_close(ours[:, :1], model.encoder.rnn(first)[0])
    out, _ = model(x.requires_grad_())
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters()) and x.grad.abs().sum() > 0


def test_embedding_projection_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    tokens = torch.randint(0, 10, (3, 6))
    model = SequenceClassifier(10, 2, cell="gru", hidden_size=4, embedding=True, projection_size=5)
    logits, _ = model(tokens, None, torch.tensor([6, 3, 1]))
    assert logits.shape == (3, 2)
    proj = SequenceClassifier(D, 2, hidden_size=4, projection_size=7, pooling="max")
    out, _ = proj(torch.randn(2, 5, D), None, torch.tensor([5, 2]))
    out.sum().backward()
    assert all(p.grad is not None for p in proj.parameters())


def test_convolution_front_end_is_a_centred_window_with_zeros_past_the_ends():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 2, cell="gru", hidden_size=4, projection_size=6, conv_width=5, conv_channels=7)
    conv, proj = model.encoder.conv, model.encoder.projection
    x = torch.randn(1, 4, D)
    u = proj(x)[0]  # (L, 6)
    padded = torch.cat([torch.zeros(2, 6), u, torch.zeros(2, 6)])
    want = torch.stack([torch.relu(torch.einsum("cej,je->c", conv.weight, padded[t:t + 5]) + conv.bias)
                        for t in range(4)])  # (L, 7)
    got, _ = model.encoder.rnn(want.unsqueeze(0))
    ours, _ = model.encoder(x)
    torch.testing.assert_close(ours, got)
    out, _ = model(x)
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="conv_width"):
        SequenceClassifier(D, 2, conv_width=4)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(D, 2, pooling="median")
    with pytest.raises(ValueError, match="window"):
        WindowMLP(D, 2, window=0)
    with pytest.raises(ValueError, match="mode"):
        WindowMLP(D, 2, mode="shuffled")
    with pytest.raises(ValueError, match="input_size"):
        SequenceTagger(0, 2)
    with pytest.raises(ValueError, match="deltas"):
        SequenceClassifier(10, 2, embedding=True, deltas=True)


def test_chrono_init_spreads_forget_biases_and_mirrors_the_input_gate():
    torch.manual_seed(0)
    model = SequenceClassifier(D, 2, hidden_size=50, num_layers=2, variant="peephole")
    chrono_init(model.encoder.rnn, 1000)
    for cell in model.encoder.rnn.cells:
        H = 50
        forget = cell.bias_ih[H:2 * H]
        assert forget.min() >= 0 and forget.max() <= torch.log(torch.tensor(999.0)) and forget.std() > 0.5
        torch.testing.assert_close(cell.bias_ih[:H], -forget)
        assert (cell.bias_hh[:2 * H] == 0).all()
    with pytest.raises(ValueError, match="LSTM"):
        chrono_init(SequenceClassifier(D, 2, cell="gru").encoder.rnn, 100)
    with pytest.raises(ValueError, match="4 gate blocks"):
        chrono_init(SequenceClassifier(D, 2, variant="cifg").encoder.rnn, 100)
