"""Decoding strategies (greedy, temperature, top-k) and the step-by-step generator."""
import pytest
import torch

from rnnkit.decode import DecodeStrategy, Greedy, Sample, Selection, generate, make_strategy, reorder_state
from rnnkit.models import LanguageModel


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


LOGITS = torch.tensor([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 2.9]])


def test_greedy_is_argmax():
    assert Greedy().select(LOGITS).tokens.tolist() == [1, 0]
    assert Greedy().select(LOGITS).reorder is None


def test_sampling_frequencies_follow_softmax_at_the_temperature():
    draws = Sample(temperature=2.0, seed=0).select(LOGITS[:1].repeat(20000, 1)).tokens
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    expected = torch.softmax(LOGITS[0] / 2.0, dim=-1)
    assert torch.allclose(freq, expected, atol=0.015)


def test_low_temperature_approaches_greedy_and_top_1_is_greedy():
    rows = LOGITS.repeat(500, 1)
    assert torch.equal(Sample(temperature=1e-3, seed=1).select(rows).tokens, Greedy().select(rows).tokens)
    assert torch.equal(Sample(top_k=1, seed=1).select(rows).tokens, Greedy().select(rows).tokens)


def test_top_k_never_draws_outside_the_k_best():
    draws = Sample(temperature=5.0, top_k=2, seed=3).select(LOGITS[:1].repeat(5000, 1)).tokens
    assert set(draws.tolist()) == {1, 2}


def test_seed_makes_samples_reproducible():
    rows = torch.zeros(100, 50)
    a = Sample(seed=7).select(rows).tokens
    assert torch.equal(a, Sample(seed=7).select(rows).tokens)
    assert not torch.equal(a, Sample(seed=8).select(rows).tokens)


def test_bad_strategy_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Sample(temperature=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        make_strategy(temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        Sample(top_k=-1)
    assert isinstance(make_strategy(greedy=True, temperature=0.5), Greedy)


class CountingModel(torch.nn.Module):
    """Next token = (last token + 1) mod V; counts how the generator calls it."""

    V = 5

    def __init__(self):
        super().__init__()
        self.forward_lengths, self.step_calls = [], 0

    def forward(self, tokens, state=None):
        self.forward_lengths.append(tokens.shape[1])
        return torch.nn.functional.one_hot((tokens + 1) % self.V, self.V).float(), (tokens[:, -1:].T.float(),)

    def step(self, tokens, state):
        assert tokens.dim() == 1  # one token per row: never the prefix
        self.step_calls += 1
        return torch.nn.functional.one_hot((tokens + 1) % self.V, self.V).float(), (tokens[None].float(),)


def test_generate_runs_the_prime_once_then_one_step_per_token():
    model = CountingModel()
    out = [int(t) for t in generate(model, torch.tensor([[0, 1, 2]]), 7, Greedy())]
    assert out == [3, 4, 0, 1, 2, 3, 4]
    assert model.forward_lengths == [3] and model.step_calls == 6


def test_generate_limits_only_the_first_choice_to_first_allowed():
    model = CountingModel()
    allowed = torch.tensor([False, True, False, False, False])  # the model wants 3 after 2
    out = [int(t) for t in generate(model, torch.tensor([[0, 1, 2]]), 4, Greedy(), first_allowed=allowed)]
    assert out == [1, 2, 3, 4]
    drawn = generate(model, torch.tensor([[2]]), 1, make_strategy(temperature=5.0, seed=0), first_allowed=allowed)
    assert [int(t) for t in drawn] == [1]


def test_generate_streams_lazily():
    model = CountingModel()
    tokens = generate(model, torch.tensor([[0]]), 1000, Greedy())
    next(tokens)
    assert model.step_calls == 0
    next(tokens)
    assert model.step_calls == 1


class Swap(DecodeStrategy):
    """A beam-search-like strategy: rows swap their histories each step."""

    def select(self, logits):
        return Selection(logits.argmax(-1), reorder=torch.tensor([1, 0]))


def test_reorder_is_applied_to_the_state():
    state = (torch.arange(6.0).view(1, 2, 3),)
    assert torch.equal(reorder_state(state, torch.tensor([1, 0]))[0][0, 0], torch.tensor([3.0, 4.0, 5.0]))
    seen = []

    class Recorder(CountingModel):
        def step(self, tokens, state):
            seen.append(state[0].clone())
            return super().step(tokens, state)

    list(generate(Recorder(), torch.tensor([[0, 1], [2, 3]]), 2, Swap()))
    assert seen[0][0].tolist() == [3.0, 1.0]  # the last prime tokens (1, 3), swapped


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_step_generation_equals_rerunning_the_whole_prefix(cell):
    torch.manual_seed(0)
    model = LanguageModel(11, cell, hidden_size=16, num_layers=2).eval()
    prime = torch.tensor([[1, 2, 3], [4, 5, 6]])
    fast = torch.stack(list(generate(model, prime, 12, Greedy())), dim=1)
    seq = prime
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(seq)  # re-read everything: the slow, obviously right way
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, seq[:, 3:])


def test_generate_rejects_an_empty_prime_and_restores_training_mode():
    model = LanguageModel(5, "lstm", hidden_size=4)
    with pytest.raises(ValueError, match="prime"):
        list(generate(model, torch.zeros(1, 0, dtype=torch.long), 3, Greedy()))
    list(generate(model, torch.tensor([[1]]), 3, Greedy()))
    assert model.training
