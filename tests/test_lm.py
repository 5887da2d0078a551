"""LanguageModel: every cell by name, weight tying, dropout, state carrying, step = forward."""
import pytest
import torch

from rnnkit.cells import cell_names
from rnnkit.models import LanguageModel


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cell", cell_names())
def test_every_cell_by_name_gives_logits_and_a_step_equal_to_forward(cell):
    torch.manual_seed(0)
    model = LanguageModel(13, cell, hidden_size=8, num_layers=2).eval()
    tokens = torch.randint(13, (3, 5))
    logits, state = model(tokens)
    assert logits.shape == (3, 5, 13)
    step_state = None
    for t in range(5):
        step_logits, step_state = model.step(tokens[:, t], step_state)
    torch.testing.assert_close(step_logits, logits[:, -1], rtol=1e-5, atol=1e-5)
    for a, b in zip(step_state, state):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_carrying_the_state_across_chunks_equals_one_pass():
    torch.manual_seed(0)
    model = LanguageModel(7, "lstm", hidden_size=6, num_layers=2).eval()
    tokens = torch.randint(7, (2, 12))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :5])
    second, _ = model(tokens[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_weight_tying_shares_the_embedding():
    model = LanguageModel(9, "gru", hidden_size=6, tie_weights=True)
    assert model.head.weight is model.embedding.weight
    n_tied = sum(p.numel() for p in model.parameters())
    n_free = sum(p.numel() for p in LanguageModel(9, "gru", hidden_size=6).parameters())
    assert n_free - n_tied == 9 * 6
    with pytest.raises(ValueError, match="tie_weights needs embedding_size = hidden_size"):
        LanguageModel(9, "lstm", hidden_size=6, embedding_size=4, tie_weights=True)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = LanguageModel(9, "lstm", hidden_size=16, dropout=0.5)
    tokens = torch.randint(9, (2, 6))
    assert not torch.equal(model(tokens)[0], model(tokens)[0])
    model.eval()
    assert torch.equal(model(tokens)[0], model(tokens)[0])


def test_a_few_steps_lower_the_loss_and_cell_options_pass_through():
    torch.manual_seed(0)
    model = LanguageModel(5, "lstm", hidden_size=16, variant="peephole")
    assert model.rnn.cells[0].variant == "peephole"
    tokens = torch.arange(40).remainder(5).view(2, 20)  # 0 1 2 3 4 0 1 ...: easy to learn
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        logits, _ = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_uint8_tokens_are_accepted():
    model = LanguageModel(5, "lstm", hidden_size=4)
    assert model(torch.tensor([[1, 2]], dtype=torch.uint8))[0].shape == (1, 2, 5)


def test_bad_sizes():
    with pytest.raises(ValueError, match="vocab_size"):
        LanguageModel(0)
    with pytest.raises(ValueError, match="unknown cell"):
        LanguageModel(5, "lstn")
