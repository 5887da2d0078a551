"""A tiny seeded task for the training-engine tests: a noisy token stream, an embedding-RNN-softmax model.

Registered as "toy" when imported. The stream follows next = (3·prev + 1) mod V with
probability 0.8 and is uniform otherwise, so a small model learns it quickly.
With trainer.bptt > 0 it is a streamed task ((N, bptt) chunks, carried state,
resets every data.doc_length tokens); with bptt = 0 it yields whole sequences of
doc_length tokens, shuffled each epoch (full BPTT).
Test-only knobs: data.delay (seconds of sleep per training batch, to SIGKILL a
run mid-way) and data.nan_at (a NaN loss on that training call).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from rnnkit.config import Section, option
from rnnkit.tasks import Batch, LossOutput, Task, epoch_generator, register_task
from rnnkit.train.tbptt import StreamBatches, run_with_resets


@dataclass(frozen=True)
class ToyData(Section):
    vocab_size: int = option(12, ge=2)
    num_tokens: int = option(2400, ge=8)
    valid_tokens: int = option(480, ge=8)
    doc_length: int = option(0, ge=0, help="tokens per document (0: one document)")
    batch_size: int = option(4, ge=1)
    seed: int = option(0, ge=0)
    delay: float = option(0.0, ge=0)
    nan_at: list[int] = option(default_factory=list)


@dataclass(frozen=True)
class ToyModel(Section):
    embed_size: int = option(8, ge=1)
    hidden_size: int = option(16, ge=1)
    num_layers: int = option(1, ge=1)
    dropout: float = option(0.0, ge=0, lt=1)
    layer: Literal["torch", "rnnkit"] = option("rnnkit")


def make_stream(n: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(vocab, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.8
    tokens = torch.empty(n, dtype=torch.long)
    tokens[0] = 0
    for i in range(1, n):
        tokens[i] = (3 * tokens[i - 1] + 1) % vocab if keep[i] else noise[i]
    return tokens


class ToyNet(nn.Module):
    def __init__(self, vocab: int, cfg: ToyModel):
        super().__init__()
        self.embed = nn.Embedding(vocab, cfg.embed_size)
        if cfg.layer == "rnnkit":
            from rnnkit.layers import Recurrent

            self.rnn = Recurrent("lstm", cfg.embed_size, cfg.hidden_size, num_layers=cfg.num_layers,
                                 dropout=cfg.dropout)
        else:
            self.rnn = nn.LSTM(cfg.embed_size, cfg.hidden_size, num_layers=cfg.num_layers,
                               dropout=cfg.dropout, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, vocab)

    def forward(self, x, state=None, reset=None):
        h, state = run_with_resets(self.rnn, self.embed(x), state, reset)  # (N, L, H)
        return self.head(self.drop(h)), state  # (N, L, V)


@register_task("toy")
class ToyTask(Task):
    DataConfig = ToyData
    ModelConfig = ToyModel

    def __init__(self, config):
        super().__init__(config)
        self.vocab_size = None
        self.calls = 0

    def prepare_data(self):
        d = self.data_config
        if self.vocab_size is None:
            self.vocab_size = d.vocab_size
        self.train_tokens = make_stream(d.num_tokens, d.vocab_size, d.seed)
        self.valid_tokens = make_stream(d.valid_tokens, d.vocab_size, d.seed + 1)

    def save_assets(self, directory):
        (directory / "vocab.json").write_text(json.dumps({"vocab_size": self.vocab_size}))

    def load_assets(self, directory):
        self.vocab_size = json.loads((directory / "vocab.json").read_text())["vocab_size"]

    def build_model(self):
        return ToyNet(self.vocab_size, self.model_config)

    def _batches(self, tokens, shuffle_epoch=None):
        d, bptt = self.data_config, self.config.trainer.bptt
        if bptt:
            starts = None
            if d.doc_length:
                starts = torch.arange(tokens.numel()) % d.doc_length == 0
            return StreamBatches(tokens, d.batch_size, bptt, starts)
        length = d.doc_length or 16
        n = (tokens.numel() - 1) // length
        x = tokens[: n * length].view(n, length)
        y = tokens[1: n * length + 1].view(n, length)
        order = torch.arange(n)
        if shuffle_epoch is not None:
            order = torch.randperm(n, generator=epoch_generator(self.config.run.seed, shuffle_epoch))
        b = d.batch_size
        return [Batch(inputs=x[order[i:i + b]], targets=y[order[i:i + b]])
                for i in range(0, n - b + 1, b)]

    def train_batches(self, epoch):
        batches = self._batches(self.train_tokens, shuffle_epoch=epoch)
        if self.data_config.delay:
            return _Slow(batches, self.data_config.delay)
        return batches

    def valid_batches(self):
        return self._batches(self.valid_tokens)

    def compute_loss(self, model, batch, state):
        logits, state = model(batch.inputs, state, batch.reset)  # (N, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten())
        if model.training:
            self.calls += 1
            if self.calls in self.data_config.nan_at:
                loss = loss * float("nan")
        acc = (logits.argmax(-1) == batch.targets).float().mean()
        return LossOutput(loss, {"acc": acc}, state)

    def summarize(self, metrics):
        import math

        return {**metrics, "ppl": math.exp(metrics["loss"])}

    @classmethod
    def add_arguments(cls, command, parser):
        if command == "sample":
            parser.add_argument("--length", type=int, default=10, help="tokens to generate")
            parser.add_argument("--first", type=int, default=0, help="first token")

    def sample(self, model, args):
        x = torch.tensor([[args.first]])
        state, out = None, [args.first]
        with torch.no_grad():
            for _ in range(args.length):
                logits, state = model(x, state)
                x = logits[:, -1:].argmax(-1)
                out.append(int(x))
        print(" ".join(map(str, out)))


class _Slow:
    def __init__(self, batches, delay):
        self.batches, self.delay = batches, delay

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            time.sleep(self.delay)
            yield b


# ----------------------------------------------------------------------------- test helpers

BASE_RECIPE = {
    "task": "toy",
    "data": {"batch_size": 4, "num_tokens": 1200, "valid_tokens": 240},
    "model": {"hidden_size": 16, "embed_size": 8},
    "optim": {"name": "adam", "lr": 0.01},
    "trainer": {"bptt": 10, "max_epochs": 1, "log_every": 1000},
    "run": {"seed": 0, "device": "cpu"},
}


def recipe(run_dir, *overrides):
    """The base recipe as a mapping plus the dotted overrides, with run.dir set."""
    import copy

    from rnnkit.config import apply_overrides

    return apply_overrides(copy.deepcopy(BASE_RECIPE), [f"run.dir={run_dir}", *overrides])


def make_config(run_dir, *overrides):
    from rnnkit.config import build_config

    return build_config(recipe(run_dir, *overrides))


def train(config, resume=None):
    """Train in this process, progress to a string; return (TrainResult, progress text)."""
    import io

    from rnnkit.train import Trainer

    stream = io.StringIO()
    result = Trainer(config, ToyTask(config), resume=resume, stream=stream).fit()
    return result, stream.getvalue()


def losses(run_dir, column="loss", name="train.csv"):
    from rnnkit.train.logging import read_csv

    return [row[column] for row in read_csv(Path(run_dir) / name)]


def one_thread_fixture():
    """Tiny models run fastest on one thread, and 2 cores shared with other processes thrash with more."""
    import pytest

    @pytest.fixture(autouse=True)
    def _one_thread():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)

    return _one_thread
