"""Beam search and the shared decoding interface, on hand-made log-probability tables."""
import itertools
import math

import pytest
import torch
from torch import nn

from rnnkit.decode import BeamSearch, Greedy, Sample, decode, select_rows

BOS, EOS, A, B, C = 0, 1, 2, 3, 4
V = 5


def table_step(tables, calls=None):
    """A step function reading log p(next | prefix) from `tables[n][prefix]` for source n.

    The state is (source index (B,), produced tokens (B, t)); rows are picked with select_rows.
    A prefix missing from the table ends for sure.
    """
    def step(tokens, state):
        source, history = state
        if calls is not None:
            calls.append(len(tokens))
        history = torch.cat([history, tokens.unsqueeze(1)], dim=1)  # (B, t + 1), BOS first
        rows = []
        for n, prefix in zip(source.tolist(), history[:, 1:].tolist()):
            probs = tables[n].get(tuple(prefix), {EOS: 1.0})
            rows.append([math.log(probs[v]) if probs.get(v, 0) > 0 else float("-inf") for v in range(V)])
        return torch.tensor(rows), (source, history)
    return step


def initial(n):
    return (torch.arange(n), torch.zeros((n, 0), dtype=torch.long))


def run(tables, strategy, max_length=6, min_length=0, calls=None):
    return decode(table_step(tables, calls), initial(len(tables)), len(tables), strategy, bos=BOS, eos=EOS,
                  max_length=max_length, min_length=min_length, reorder=select_rows)


# greedy takes A (0.6) then A (0.4): p = 0.24; beam 2 also keeps B (0.4) whose end has 0.9: p = 0.36
GARDEN_PATH = {(): {A: 0.6, B: 0.4}, (A,): {A: 0.4, B: 0.3, EOS: 0.3}, (A, A): {EOS: 1.0},
               (A, B): {EOS: 1.0}, (B,): {EOS: 0.9, A: 0.1}, (B, A): {EOS: 1.0}}


def test_beam_finds_a_more_probable_sequence_than_greedy():
    greedy = run([GARDEN_PATH], Greedy())[0][0]
    assert greedy.tokens == [A, A] and greedy.log_prob == pytest.approx(math.log(0.24))
    beam = run([GARDEN_PATH], BeamSearch(beam_size=2))[0][0]
    assert beam.tokens == [B] and beam.log_prob == pytest.approx(math.log(0.36)) and beam.finished
    assert beam.log_prob > greedy.log_prob


def test_nbest_list_is_the_exhaustive_ranking_when_the_beam_holds_everything():
    torch.manual_seed(0)
    table = {}
    for length in range(3):  # every prefix over {A, B} up to length 2 gets a random distribution
        for prefix in itertools.product([A, B], repeat=length):
            p = torch.rand(3) + 0.05
            p = (p / p.sum()).tolist()
            table[prefix] = {EOS: p[0], A: p[1], B: p[2]} if length < 2 else {EOS: 1.0}
    every = []
    for length in range(3):
        for prefix in itertools.product([A, B], repeat=length):
            lp = sum(math.log(table[prefix[:i]][prefix[i]]) for i in range(length)) + math.log(table[prefix][EOS])
            every.append((lp, list(prefix)))
    every.sort(key=lambda x: -x[0])
    hyps = run([table], BeamSearch(beam_size=8, n_best=7))[0]
    assert [h.tokens for h in hyps] == [t for _, t in every[:7]]
    assert [h.log_prob for h in hyps] == pytest.approx([lp for lp, _ in every[:7]])


def test_ties_go_to_the_lower_token_and_beam_one_agrees_with_greedy():
    tie = {(): {A: 0.5, B: 0.5}, (A,): {EOS: 1.0}, (B,): {EOS: 1.0}}
    assert run([tie], Greedy())[0][0].tokens == [A]
    assert run([tie], BeamSearch(beam_size=1))[0][0].tokens == [A]
    both = run([tie], BeamSearch(beam_size=2, n_best=2))[0]
    assert [h.tokens for h in both] == [[A], [B]]
    assert both[0].log_prob == both[1].log_prob == pytest.approx(math.log(0.5))


def test_early_end_stops_the_search_and_min_length_forbids_it():
    short = {(): {EOS: 0.9, A: 0.1}, (A,): {A: 1.0}, (A, A): {EOS: 1.0}}
    calls = []
    hyps = run([short], BeamSearch(beam_size=3), max_length=10, calls=calls)
    assert hyps[0][0].tokens == [] and hyps[0][0].log_prob == pytest.approx(math.log(0.9))
    assert len(calls) == 1  # the best candidate of the first step ended: nothing live can beat it
    forced = run([short], BeamSearch(beam_size=3), max_length=10, min_length=2)[0][0]
    assert forced.tokens == [A, A] and forced.log_prob == pytest.approx(math.log(0.1))
    assert run([short], Greedy(), min_length=2)[0][0].tokens == [A, A]


def test_max_length_returns_unfinished_hypotheses():
    endless = {(): {A: 1.0}, (A,): {A: 1.0}, (A, A): {A: 1.0}}
    hyp = run([endless], BeamSearch(beam_size=2), max_length=3)[0][0]
    assert hyp.tokens == [A, A, A] and not hyp.finished
    assert not run([endless], Greedy(), max_length=3)[0][0].finished


def test_length_penalty_changes_the_ranking():
    # [] p = 0.4 (1 token with </s>); [A] 0.6 * 0.55 = 0.33 (2 tokens); [A, B] 0.6 * 0.45 = 0.27 (3 tokens)
    table = {(): {EOS: 0.4, A: 0.6}, (A,): {EOS: 0.55, B: 0.45}, (A, B): {EOS: 1.0}}
    assert [h.tokens for h in run([table], BeamSearch(beam_size=3, n_best=3))[0]] == [[], [A], [A, B]]
    hyps = run([table], BeamSearch(beam_size=3, n_best=3, length_penalty=1.0))[0]
    assert [h.tokens for h in hyps] == [[A, B], [A], []]
    assert [h.score for h in hyps] == pytest.approx([math.log(0.27) / 3, math.log(0.33) / 2, math.log(0.4)])


def test_the_search_stops_only_when_no_live_prefix_can_enter_the_nbest():
    # after step 2 two hypotheses have ended ([] 0.5, [B] 0.2) but [A, C] (0.27) is alive and ends for sure
    table = {(): {EOS: 0.5, A: 0.3, B: 0.2}, (A,): {C: 0.9, EOS: 0.1}, (B,): {EOS: 1.0}, (A, C): {EOS: 1.0}}
    calls = []
    hyps = run([table], BeamSearch(beam_size=3, n_best=2), calls=calls)[0]
    assert [h.tokens for h in hyps] == [[], [A, C]] and len(calls) == 3


def test_batched_sources_decode_as_each_alone():
    tables = [GARDEN_PATH, {(): {C: 0.7, A: 0.3}, (C,): {EOS: 0.5, C: 0.5}, (C, C): {EOS: 1.0}},
              {(): {EOS: 1.0}}]
    together = run(tables, BeamSearch(beam_size=3, n_best=2))
    for n, table in enumerate(tables):
        alone = run([table], BeamSearch(beam_size=3, n_best=2))[0]
        assert [(h.tokens, round(h.log_prob, 6)) for h in together[n]] == \
            [(h.tokens, round(h.log_prob, 6)) for h in alone]


class TinyDecoder(nn.Module):
    """A random GRU decoder: batch-first state (B, H)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.embed, self.cell, self.out = nn.Embedding(7, 6), nn.GRUCell(6, 6), nn.Linear(6, 7)

    def step(self, tokens, state):
        state = self.cell(self.embed(tokens), state)
        return self.out(state) * 3, state


def test_beam_of_width_one_equals_greedy_on_a_random_model():
    model = TinyDecoder()
    start = torch.randn(6, 6)
    greedy = decode(model.step, start, 6, Greedy(), bos=0, eos=1, max_length=8, reorder=select_rows)
    beam = decode(model.step, start, 6, BeamSearch(beam_size=1), bos=0, eos=1, max_length=8, reorder=select_rows)
    for g, b in zip(greedy, beam):
        assert g[0].tokens == b[0].tokens and g[0].log_prob == pytest.approx(b[0].log_prob, abs=1e-5)
    wide = decode(model.step, start, 6, BeamSearch(beam_size=4), bos=0, eos=1, max_length=8, reorder=select_rows)
    for g, w in zip(greedy, wide):  # a wider beam never ends up less probable among finished hypotheses
        if g[0].finished and w[0].finished:
            assert w[0].log_prob >= g[0].log_prob - 1e-5


def test_sampling_is_seeded_and_follows_the_table():
    table = {(): {A: 0.5, B: 0.5}, (A,): {EOS: 1.0}, (B,): {EOS: 1.0}}
    first = [run([table], Sample(seed=s))[0][0].tokens for s in range(20)]
    again = [run([table], Sample(seed=s))[0][0].tokens for s in range(20)]
    assert first == again and {tuple(t) for t in first} == {(A,), (B,)}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="beam width"):
        BeamSearch(beam_size=0)
    with pytest.raises(ValueError, match="n_best"):
        BeamSearch(beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="max_length"):
        run([GARDEN_PATH], Greedy(), max_length=0)
    with pytest.raises(TypeError, match="strategy"):
        run([GARDEN_PATH], "beam")


def test_a_language_model_decodes_through_the_same_interface():
    from rnnkit.decode import generate
    from rnnkit.models import LanguageModel

    torch.manual_seed(0)
    model = LanguageModel(9, "lstm", hidden_size=8, num_layers=2).eval()
    state = tuple(torch.randn_like(s) for s in model.initial_state(3))  # three different histories
    hyps = decode(model.step, state, 3, Greedy(), bos=4, eos=0, max_length=12)  # default reorder: (layers, N, H)
    streamed = torch.stack(list(generate(model, torch.full((3, 1), 4), 12, Greedy(), state)), dim=1).tolist()
    assert len({tuple(h[0].tokens) for h in hyps}) > 1 and all(h[0].tokens for h in hyps)
    for row, [h] in zip(streamed, hyps):
        expected = row[: row.index(0)] if 0 in row else row
        assert h.tokens == expected
    beam = decode(model.step, state, 3, BeamSearch(1), bos=4, eos=0, max_length=12)
    assert [b[0].tokens for b in beam] == [h[0].tokens for h in hyps]
