"""Dynamic evaluation (rnnkit.train.dynamic) against a plain reference loop, and `rnnkit eval --dynamic`."""
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from test_lm_task import _private_cache, corpus, recipe, trained  # noqa: E402,F401  (fixtures)
from toytask import one_thread_fixture  # noqa: E402

from rnnkit.cli import main  # noqa: E402
from rnnkit.models import LanguageModel  # noqa: E402
from rnnkit.train.batch import LossOutput  # noqa: E402
from rnnkit.train.dynamic import DynamicConfig, dynamic_evaluate, mean_square_gradients  # noqa: E402
from rnnkit.train.tbptt import StreamBatches  # noqa: E402

_one_thread = one_thread_fixture()
V = 11


class StreamTask:
    """The least a task needs here: mean cross-entropy of a stream chunk, metrics as they are."""

    def compute_loss(self, model, batch, state):
        logits, state = model(batch.inputs, state)
        return LossOutput(F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten()), {}, state)

    def summarize(self, metrics):
        return metrics


def model_and_tokens(cell="lstm", seed=0, length=301):
    torch.manual_seed(seed)
    model = LanguageModel(V, cell, hidden_size=16, num_layers=2, embedding_size=8).double()
    tokens = torch.randint(0, V, (length,))
    return model, tokens


def reference(model, tokens, streams, bptt, config, mean_squares=None):
    """Krause et al.'s procedure written out step by step, on a copy of the model."""
    model = __import__("copy").deepcopy(model).eval()
    params = [p for p in model.parameters()]
    trained = [p.detach().clone() for p in params]
    if config.rule == "rms":
        rms = [ms.sqrt() for ms in mean_squares]
        rms = [torch.where(r < config.rms_floor * r.mean(), config.rms_floor * r.mean(), r) for r in rms]
        mean_rms = torch.cat([r.flatten() for r in rms]).mean()
    total, count, state = 0.0, 0, None
    for batch in StreamBatches(tokens, streams, bptt):
        logits, new_state = model(batch.inputs, state)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())
        total += loss.item() * batch.inputs.numel()
        count += batch.inputs.numel()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for i, (p, g, p0) in enumerate(zip(params, grads, trained)):
                if config.rule == "sgd":
                    p -= config.lr * g
                    p += config.decay * (p0 - p)
                else:
                    p -= config.lr * g / (rms[i] + config.eps)
                    p += torch.clamp(config.decay * rms[i] / mean_rms, max=1.0) * (p0 - p)
        state = tuple(s.detach() for s in new_state)
    return total / count


@pytest.mark.parametrize("rule,decay,floor", [("sgd", 0.0, 0.0), ("sgd", 0.02, 0.0), ("rms", 0.0, 0.0),
                                              ("rms", 0.05, 0.0), ("rms", 0.05, 0.5)])
def test_matches_a_reference_loop_and_restores_the_weights(rule, decay, floor):
    model, tokens = model_and_tokens()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = StreamTask()
    mean_squares = None
    if rule == "rms":
        train = StreamBatches(torch.randint(0, V, (500,)), 3, 7)
        mean_squares = mean_square_gradients(task, model, train, 5, device=torch.device("cpu"))
        assert all(ms.shape == p.shape and (ms >= 0).all() for ms, p in zip(mean_squares, model.parameters()))
    config = DynamicConfig(rule=rule, lr=0.3 if rule == "sgd" else 1e-3, decay=decay, rms_floor=floor)
    got = dynamic_evaluate(task, model, StreamBatches(tokens, 3, 7), config, device=torch.device("cpu"),
                           mean_squares=mean_squares)
    want = reference(model, tokens, 3, 7, config, mean_squares)
    assert got["loss"] == pytest.approx(want, rel=1e-9)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} not restored"
    assert all(p.grad is None for p in model.parameters())


def test_a_tiny_step_scores_as_static_evaluation_does():
    from rnnkit.train.trainer import evaluate

    model, tokens = model_and_tokens("gru")
    task = StreamTask()
    static = evaluate(task, model, StreamBatches(tokens, 4, 9), device=torch.device("cpu"))
    dynamic = dynamic_evaluate(task, model, StreamBatches(tokens, 4, 9), DynamicConfig(rule="sgd", lr=1e-12),
                               device=torch.device("cpu"))
    assert dynamic["loss"] == pytest.approx(static["loss"], rel=1e-9)


def test_it_learns_what_repeats_in_the_evaluated_text():
    """A random 20-symbol phrase said 60 times: static scoring stays near log V, dynamic
    scoring picks the phrase up as it goes."""
    from rnnkit.train.trainer import evaluate

    model, _ = model_and_tokens("lstm", seed=1)
    phrase = torch.randint(0, V, (20,), generator=torch.Generator().manual_seed(5))
    tokens = phrase.repeat(60)
    task, cpu = StreamTask(), torch.device("cpu")
    static = evaluate(task, model, StreamBatches(tokens, 1, 10), device=cpu)["loss"]
    other_text = StreamBatches(torch.randint(0, V, (400,)), 1, 10)
    mean_squares = mean_square_gradients(task, model, other_text, 10, device=cpu)
    dynamic = dynamic_evaluate(task, model, StreamBatches(tokens, 1, 10), DynamicConfig(rule="rms", lr=1e-2),
                               device=cpu, mean_squares=mean_squares)["loss"]
    assert static > 0.9 * math.log(V)
    assert dynamic < 0.75 * static


def test_the_rms_floor_bounds_the_steps_of_rows_the_training_chunks_never_moved():
    """Training chunks of tokens 0-4 only: the embedding rows of 5-10 get no gradient
    there, so without a floor their first step is η·g/ε when the scored text has them."""
    model, _ = model_and_tokens("lstm", seed=2)
    task, cpu = StreamTask(), torch.device("cpu")
    train = StreamBatches(torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(1)), 2, 10)
    mean_squares = mean_square_gradients(task, model, train, 10, device=cpu)
    assert (mean_squares[0][5:] == 0).all() and (mean_squares[0][:5] > 0).all()  # the embedding
    tokens = torch.arange(V).repeat(4)  # every token, in the first chunk already

    def first_step(floor):
        """The largest change of an unseen token's embedding row after the first chunk."""
        seen = []
        hook = model.embedding.register_forward_pre_hook(lambda m, _: seen.append(m.weight.detach().clone()))
        config = DynamicConfig(rule="rms", lr=1e-4, rms_floor=floor)
        dynamic_evaluate(task, model, StreamBatches(tokens, 1, 11), config, device=cpu,
                         mean_squares=mean_squares)
        hook.remove()
        return (seen[1] - seen[0])[5:].abs().max().item(), (seen[1] - seen[0])[:5].abs().max().item()

    unseen, seen_rows = first_step(0.0)
    assert unseen > 1e3 * seen_rows  # η / ε: 1e-4 / 1e-8 times the gradient
    unseen, seen_rows = first_step(0.1)
    assert 0 < unseen < 20 * seen_rows  # at most η / (0.1 · mean RMS) times the gradient


def test_bad_settings_name_the_problem():
    with pytest.raises(ValueError, match="unknown rule 'adam'"):
        DynamicConfig(rule="adam")
    with pytest.raises(ValueError, match="step size must be > 0"):
        DynamicConfig(lr=0.0)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        DynamicConfig(decay=1.0)
    with pytest.raises(ValueError, match=r"rms floor must be in \[0, 1\]"):
        DynamicConfig(rms_floor=2.0)
    model, tokens = model_and_tokens()
    with pytest.raises(ValueError, match="needs the training gradients' mean squares"):
        dynamic_evaluate(StreamTask(), model, StreamBatches(tokens, 2, 5), DynamicConfig(rule="rms"),
                         device=torch.device("cpu"))


def test_eval_command_dynamic(trained, capsys):
    run, _ = trained
    capsys.readouterr()

    def bits(*extra):
        assert main(["eval", str(run), "--split", "valid", "--streams", "2", "--bptt", "10", *extra]) == 0
        out = capsys.readouterr().out
        return float(dict(line.split(" ", 1) for line in out.splitlines()[1:])["bits_per_char"])

    static = bits()
    assert bits("--dynamic", "--dynamic-rule", "sgd", "--dynamic-lr", "1e-12") == pytest.approx(static, rel=1e-5)
    adapted = bits("--dynamic", "--dynamic-lr", "1e-3", "--dynamic-rms-batches", "3")
    assert math.isfinite(adapted) and adapted != static
    assert bits() == static  # nothing of the adaptation stays in the run
    floored = bits("--dynamic", "--dynamic-lr", "1e-3", "--dynamic-rms-batches", "3", "--dynamic-rms-floor", "1")
    assert math.isfinite(floored) and floored != adapted  # every RMS raised to its tensor's mean
    assert main(["eval", str(run), "--dynamic", "--dynamic-lr", "-1"]) == 1
    assert "step size must be > 0" in capsys.readouterr().err
    assert main(["eval", str(run), "--dynamic", "--dynamic-rms-floor", "2"]) == 1
    assert "rms floor must be in [0, 1]" in capsys.readouterr().err


def test_eval_command_ngram_mixture(trained, capsys):
    run, _ = trained
    capsys.readouterr()

    def scores(*extra, split="valid"):
        assert main(["eval", str(run), "--split", split, "--streams", "2", "--bptt", "10", *extra]) == 0
        out = capsys.readouterr().out
        return {k: float(v.split()[0]) for k, v in (line.split(" ", 1) for line in out.splitlines()[1:])}

    alone = scores()["bits_per_char"]
    mixed = scores("--ngram", "2")
    assert mixed["model_bits_per_char"] == pytest.approx(alone, rel=1e-5)
    assert mixed["ngram_order"] == 2 and 0 < mixed["ngram_weight"] < 1
    # the weight is fitted on this very split: the mixture beats both of its parts here
    assert mixed["bits_per_char"] < min(alone, mixed["ngram_bits_per_char"])
    assert scores("--ngram", "2", "--ngram-weight", "1")["bits_per_char"] == pytest.approx(alone, rel=1e-5)
    assert scores("--ngram", "2", "--ngram-weight", "0")["bits_per_char"] == \
        pytest.approx(mixed["ngram_bits_per_char"], rel=1e-5)
    test = scores("--ngram", "2", split="test")
    assert test["ngram_weight"] == pytest.approx(mixed["ngram_weight"])  # fitted on valid, not on test
    adapted = scores("--ngram", "2", "--dynamic", "--dynamic-lr", "1e-3", "--dynamic-rms-batches", "3")
    assert math.isfinite(adapted["bits_per_char"]) and adapted["loss"] != mixed["loss"]
    assert adapted["model_bits_per_char"] != mixed["model_bits_per_char"]  # the model adapts inside the mixture
    assert adapted["ngram_weight"] == pytest.approx(mixed["ngram_weight"])
    assert scores()["bits_per_char"] == alone  # nothing of the mixture or the adaptation stays in the run
    assert main(["eval", str(run), "--ngram", "2", "--ngram-weight", "1.5"]) == 1
    assert "--ngram-weight must lie in [0, 1], got 1.5" in capsys.readouterr().err


def test_the_ngram_mixture_scores_each_target_with_its_own_ngram_probability(trained):
    """Against the mixture written out by index: target (row i, step t) is token i·S + t + 1."""
    import argparse

    from rnnkit.cli import load_run
    from rnnkit.models import KneserNeyLM

    run, _ = trained
    task, model, _, _ = load_run(run)
    task.prepare_data()
    tokens = task.tokens("valid")
    N, bptt, w = 3, 7, 0.6
    got = task.evaluate_split(model, "valid", argparse.Namespace(streams=N, bptt=bptt, ngram=3, ngram_weight=w),
                              device=torch.device("cpu"))
    ngram = torch.from_numpy(KneserNeyLM(3, len(task.vocab)).fit(task.tokens("train").numpy())
                             .log_probs(tokens.numpy()))
    S = (len(tokens) - 1) // N
    model.eval()
    with torch.no_grad():
        logits, _ = model(tokens[:N * S].view(N, S).long(), None)  # the whole rows at once: the same states
    model_lp = torch.log_softmax(logits.double(), -1).gather(-1, tokens[1:N * S + 1].view(N, S, 1).long())[..., 0]
    ngram_lp = ngram[torch.arange(N)[:, None] * S + torch.arange(S)[None, :] + 1]
    mixed = torch.logaddexp(model_lp + math.log(w), ngram_lp + math.log(1 - w))
    assert got["loss"] == pytest.approx(-mixed.mean().item(), rel=1e-5)
    assert got["model_loss"] == pytest.approx(-model_lp.mean().item(), rel=1e-5)
    assert got["ngram_loss"] == pytest.approx(-ngram_lp.mean().item(), rel=1e-5)
    shifted = torch.logaddexp(model_lp + math.log(w), ngram_lp.roll(1, dims=1) + math.log(1 - w))
    assert abs(-shifted.mean().item() - got["loss"]) > 1e-3  # a target off by one would show
