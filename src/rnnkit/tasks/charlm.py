"""`charlm`: character-, subword- or word-level language modelling, char-rnn style.

    rnnkit train configs/charlm-stdlib.yaml
    rnnkit sample runs/charlm-stdlib --prime "def " --temperature 0.8 --length 2000
    rnnkit eval runs/charlm-stdlib --split test

Data: a corpus (`data.source`: stdlib, path or bible; rnnkit.data.text) split into
train/valid/test, a vocabulary fitted on the training split (characters; with
`data.level: subword` byte-pair-encoded pieces, `data.vocab_size` tokens in all; or the
`data.vocab_size` most frequent words with `data.level: word`), the ids encoded once
and memory-mapped from the cache, served as N = `data.batch_size` parallel streams
in (N, `trainer.bptt`) chunks with the state carried across chunks.
Model: `rnnkit.models.LanguageModel` (Embedding → Recurrent → dropout → Linear).
Loss: mean cross-entropy in nats per token; validation adds perplexity and bits per
character (per word at word level; at subword level bits per token and bits per
character of the text, the split's total bits over its characters). Every
`data.sample_every` evaluations a short sample shows what the model has learnt so far.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.nn import functional as F

from ..cells import cell_names
from ..config import ConfigError, Section, option
from ..data import (CorpusError, CharVocab, SubwordVocab, WordVocab, check_fits, encode_split,
                    eval_streams, load_corpus, load_vocab)
from ..data.text import SPLITS
from ..decode import generate, make_strategy
from ..metrics import lm_metrics
from ..models import KneserNeyLM, LanguageModel, fit_mix_weight, mix_log_probs
from ..train import distributed
from .base import Batch, LossOutput, StreamBatches, Task, TaskCommandError, cell_options, check_cell
from .registry import register_task

VOCAB_FILE = "vocab.json"


@dataclass(frozen=True)
class LMData(Section):
    """The corpus, its vocabulary and the stream batching."""

    source: Literal["stdlib", "path", "bible"] = option(
        "stdlib", help="stdlib: this Python's standard library source; path: data.path; bible: Debian bible-kjv")
    path: str = option("", help="source=path: a text file or a directory of text files")
    glob: str = option("*", help="source=path with a directory: which file names to read (e.g. '*.txt')")
    encoding_errors: Literal["strict", "replace"] = option(
        "strict", help="undecodable UTF-8: strict stops naming file and byte offset; replace uses U+FFFD")
    split: tuple[float, float, float] = option((0.9, 0.05, 0.05), help="train, valid, test fractions")
    split_seed: int = option(0, ge=0, help="seed of the file shuffle that makes the split")
    max_files: int = option(0, ge=0, help="keep only the first N files of each split (0: all; for quick tests)")
    level: Literal["char", "subword", "word"] = option(
        "char", help="tokens: characters, byte-pair-encoded pieces of words, or words")
    vocab_size: int = option(10000, ge=1, help="level=word: the most frequent words kept (plus <unk>, <eol>); "
                                               "level=subword: tokens in all (characters and merges)")
    batch_size: int = option(32, ge=1, help="N parallel streams per batch")
    eval_bptt: int = option(0, ge=0, help="chunk length for evaluation (0: trainer.bptt)")
    cache: bool = option(True, help="keep the encoded corpus in $RNNKIT_CACHE (~/.cache/rnnkit)")
    sample_every: int = option(1, ge=0, help="show a sample every N evaluations while training (0: never)")
    sample_length: int = option(200, ge=1, help="tokens in each training sample")
    sample_prime: str = option("def ", help="prime text of the training samples")
    sample_temperature: float = option(0.8, gt=0, help="temperature of the training samples")
    embeddings: str = option("", help="word2vec vectors (text; .bin binary) to start the embedding from, "
                                      "'frozen:PATH' to keep them fixed; '' none (rnnkit.inspect.pretrained)")

    def check(self):
        if self.source == "path" and not self.path:
            raise ConfigError("path", self.path, "a file or directory when source is 'path'")


@dataclass(frozen=True)
class LMModel(Section):
    """Embedding → Recurrent → dropout → Linear; any rnnkit cell by name."""

    cell: str = option("lstm", help="rnnkit cell: " + ", ".join(cell_names()))
    variant: str = option("", help="cell variant (lstm: peephole, cifg, ...; gru: original); '' the default")
    nonlinearity: str = option("", help="rnn cell: tanh or relu ('' the default)")
    hidden_size: int = option(256, ge=1, help="H, units per layer")
    num_layers: int = option(2, ge=1, help="stacked recurrent layers")
    embedding_size: int = option(0, ge=0, help="E (0: hidden_size)")
    dropout: float = option(0.0, ge=0, lt=1, help="dropout on embeddings, between layers and before the output")
    tie_weights: bool = option(False, help="share the embedding matrix with the output layer (needs E = H)")
    residual: bool = option(False, help="residual connections between stacked layers")
    skip: int = option(0, ge=0, help="skip connection through time from h[t-skip] (0: off)")
    variational: bool = option(False, help="one dropout mask per sequence between layers")

    def check(self):
        check_cell(self.cell)
        if self.tie_weights and self.embedding_size not in (0, self.hidden_size):
            raise ConfigError("tie_weights", True, f"embedding_size 0 or = hidden_size ({self.hidden_size}) "
                              f"when tie_weights is true, got embedding_size {self.embedding_size}")


@register_task("charlm")
class CharLM(Task):
    """Language model over characters or words (see the module docstring)."""

    DataConfig = LMData
    ModelConfig = LMModel
    unit = "tok"

    def __init__(self, config):
        super().__init__(config)
        self.vocab = None
        self.corpus = None
        self._ids: dict[str, torch.Tensor] = {}
        self._model = None  # the unwrapped model, for the samples shown during training
        self._training = False
        self._evaluations = 0
        self._restored = False  # load_assets ran: the checkpoint, not data.embeddings, holds the weights
        self._mix_weight = 1.0  # the model's weight when `rnnkit eval --ngram` scores a mixture
        self._scored = "valid"  # the split whose batches were made last (subword bits per character)
        self._chars: dict[str, int] = {}  # characters of each split (subword level)

    # -- data --------------------------------------------------------------------------
    def prepare_data(self) -> None:
        d = self.data_config
        if self.config.trainer.bptt < 1:
            raise ConfigError("trainer.bptt", self.config.trainer.bptt,
                              "bptt >= 1: charlm trains on (batch_size, bptt) chunks of a token stream")
        try:
            self.corpus = load_corpus(d.source, d.path or None, seed=d.split_seed, fractions=d.split,
                                      encoding_errors=d.encoding_errors, glob=d.glob, max_files=d.max_files)
            if self.vocab is None:
                if d.level == "char":
                    self.vocab = CharVocab.build(self.corpus.blocks("train"))
                elif d.level == "subword":
                    self.vocab = self._build_subwords(d.vocab_size)
                else:
                    self.vocab = WordVocab.build(self.corpus.blocks("train"), size=d.vocab_size)
        except CorpusError as err:
            raise ConfigError(f"data.{'path' if d.source == 'path' else 'source'}",
                              message=f"data.source={d.source}: {err}") from None
        if self.vocab.kind != d.level:
            raise ConfigError("data.level", d.level, f"{self.vocab.kind!r}, the level of this run's vocabulary")
        self._ids = {}
        self._chars = {}
        try:  # here, before the trainer writes anything into the run directory
            check_fits(len(self.tokens("train")), d.batch_size, self.config.trainer.bptt, "train split")
        except CorpusError as err:
            raise ConfigError("data.batch_size", d.batch_size, message=str(err)) from None

    def tokens(self, split: str) -> torch.Tensor:
        """The split's ids (T,) (a torch view of the cached memory map)."""
        if split not in self._ids:
            d = self.data_config
            try:
                ids = encode_split(self.corpus, split, self.vocab, cache=d.cache)
            except CorpusError as err:
                raise ConfigError("data.source", message=f"data.source={d.source}: {err}") from None
            self._ids[split] = torch.from_numpy(ids)
        return self._ids[split]

    def _build_subwords(self, size: int) -> SubwordVocab:
        import time

        start = time.perf_counter()
        try:
            vocab = SubwordVocab.build(self.corpus.blocks("train"), size=size)
        except ValueError as err:
            raise ConfigError("data.vocab_size", size, message=f"data.vocab_size = {size}: {err}") from None
        if distributed.from_environment().is_main:
            print(f"# subword vocabulary: {len(vocab.symbols)} characters and {len(vocab.merges)} merges "
                  f"learnt on the training split in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        return vocab

    def chars_per_token(self, split: str) -> float:
        """Characters of `split` per token (1 below subword level)."""
        if self.vocab.kind != "subword":
            return 1.0
        if split not in self._chars:
            self._chars[split] = self.vocab.num_chars(self.tokens(split).numpy())
        return self._chars[split] / len(self.tokens(split))

    def save_assets(self, directory: Path) -> None:
        self.vocab.save(Path(directory) / VOCAB_FILE)

    def load_assets(self, directory: Path) -> None:
        path = Path(directory) / VOCAB_FILE
        if not path.exists():
            raise TaskCommandError(f"{directory}: no {VOCAB_FILE}; this is not a language-model run")
        self.vocab = load_vocab(path)
        self._restored = True

    # -- model ---------------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        m = self.model_config
        model = LanguageModel(len(self.vocab), m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                              embedding_size=m.embedding_size or None, dropout=m.dropout,
                              tie_weights=m.tie_weights, residual=m.residual, skip=m.skip,
                              variational=m.variational, **cell_options(m))
        if self.data_config.embeddings:
            self._pretrained(model)
        self._model = model
        return model

    def _pretrained(self, model) -> None:
        """data.embeddings: word2vec vectors into the embedding, with a coverage report."""
        from ..inspect.pretrained import apply_pretrained

        try:
            coverage = apply_pretrained(model, self.vocab, self.data_config.embeddings, load=not self._restored)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError("data.embeddings", self.data_config.embeddings,
                              message=f"data.embeddings = {self.data_config.embeddings!r}: {err}") from None
        if coverage is not None and distributed.from_environment().is_main:
            print(f"data.embeddings: {coverage}", file=sys.stderr)

    # -- batches -------------------------------------------------------------------------
    def train_batches(self, epoch: int) -> StreamBatches:
        self._training = True
        return StreamBatches(self.tokens("train"), self.data_config.batch_size, self.config.trainer.bptt)

    def valid_batches(self) -> StreamBatches:
        return self.eval_batches("valid")

    def eval_batches(self, split: str, streams: int = 0, bptt: int = 0) -> StreamBatches:
        """`split` as `streams` parallel streams in chunks of `bptt` (0: data.batch_size and
        data.eval_bptt, or trainer.bptt), fewer where the split is short."""
        if split not in SPLITS:
            raise TaskCommandError(f"task 'charlm' has no split {split!r} (it has: {', '.join(SPLITS)})")
        d = self.data_config
        self._scored = split
        tokens = self.tokens(split)
        try:
            streams, bptt = eval_streams(len(tokens), streams or d.batch_size,
                                         bptt or d.eval_bptt or self.config.trainer.bptt)
        except CorpusError as err:
            raise ConfigError("data.source", message=f"{split} split: {err}") from None
        return StreamBatches(tokens, streams, bptt)

    # -- loss and metrics ----------------------------------------------------------------
    def compute_loss(self, model, batch: Batch, state) -> LossOutput:
        logits, state = model(batch.inputs, state)  # (N, L, V)
        if isinstance(batch.targets, tuple):  # (targets, the n-gram's log-probabilities): a mixture
            targets, ngram = batch.targets
            model_lp = _target_log_probs(logits, targets)
            loss = -mix_log_probs(model_lp, ngram, self._mix_weight).mean()
            return LossOutput(loss, {"model_loss": -model_lp.mean().detach(), "ngram_loss": -ngram.mean()}, state)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten().long())
        return LossOutput(loss, {}, state)

    def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.vocab.kind == "subword":  # nats per token to bits per character of the split
            per_char = metrics["loss"] / self.chars_per_token(self._scored)
            metrics = {**metrics, **lm_metrics(metrics["loss"], "token"), "bits_per_char": per_char / math.log(2)}
        else:
            metrics = {**metrics, **lm_metrics(metrics["loss"], self.vocab.kind)}
        if self._training:
            self._evaluations += 1
            every = self.data_config.sample_every
            if every and self._evaluations % every == 0 and distributed.from_environment().is_main:
                self._show_sample()
        return metrics

    def _show_sample(self) -> None:
        """A short sample to stderr, drawn with its own generator (training's RNG stays untouched)."""
        d = self.data_config
        prime, allowed, held = self._healed_prime(d.sample_prime or "\n", strict=False)
        strategy = make_strategy(temperature=d.sample_temperature, seed=self._evaluations)
        device = next(self._model.parameters()).device
        ids = [int(t) for t in generate(self._model, prime.to(device), d.sample_length, strategy,
                                        first_allowed=allowed)]
        text = d.sample_prime + self.vocab.decode(ids)[len(held):]
        sys.stderr.write("\n---- sample ----\n" + text.rstrip("\n") + "\n----------------\n")
        sys.stderr.flush()

    def evaluate_split(self, model, split: str, args, *, device, precision: str = "fp32") -> dict[str, float]:
        """Static scoring, or with --dynamic the model adapting as it reads (rnnkit.train.dynamic);
        with --ngram K, of the model mixed with a Kneser-Ney K-gram."""
        streams, bptt = getattr(args, "streams", 0), getattr(args, "bptt", 0)
        batches = self.eval_batches(split, streams, bptt)
        order = getattr(args, "ngram", 0)
        if order:
            mixture = self._ngram_mixture(model, split, batches, order, getattr(args, "ngram_weight", None),
                                          device=device, precision=precision)
            self._scored = split  # fitting the weight made the validation split's batches
            metrics = self._score(model, mixture, args, device=device, precision=precision)
            return {**metrics, "ngram_order": order, "ngram_weight": self._mix_weight}
        return self._score(model, batches, args, device=device, precision=precision)

    def _score(self, model, batches, args, *, device, precision: str) -> dict[str, float]:
        from ..train.trainer import evaluate

        if not getattr(args, "dynamic", False):
            return evaluate(self, model, batches, device=device, precision=precision)
        from ..train.dynamic import DynamicConfig, dynamic_evaluate, mean_square_gradients

        try:
            config = DynamicConfig(rule=args.dynamic_rule, lr=args.dynamic_lr, decay=args.dynamic_decay,
                                   rms_batches=args.dynamic_rms_batches,
                                   rms_floor=getattr(args, "dynamic_rms_floor", 0.0))
        except ValueError as err:
            raise TaskCommandError(str(err)) from None
        mean_squares = None
        if config.rule == "rms":  # gradient scales of the training text, chunked as the scoring is
            train = StreamBatches(self.tokens("train"), batches.streams, batches.bptt)
            mean_squares = mean_square_gradients(self, model, train, config.rms_batches,
                                                 device=device, precision=precision)
        return dynamic_evaluate(self, model, batches, config, device=device, precision=precision,
                                mean_squares=mean_squares)

    def _ngram_mixture(self, model, split: str, batches: StreamBatches, order: int, weight: float | None, *,
                       device, precision: str) -> "NgramStream":
        """`batches` with each target's log-probability under a Kneser-Ney model of `order`
        fitted on the training split; sets the mixture weight (fitted by EM on the
        validation split, chunked as `batches`, when `weight` is None)."""
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise TaskCommandError(f"--ngram-weight must lie in [0, 1], got {weight}")
        V = len(self.vocab)
        ngram = KneserNeyLM(order, V).fit(self.tokens("train").numpy())
        print(f"# Kneser-Ney order {order}: {sum(ngram.num_ngrams()):,} n-grams from the training split, "
              f"fitted in {ngram.fit_seconds:.1f} s", file=sys.stderr)

        def stream(name: str, chunks: StreamBatches) -> NgramStream:
            return NgramStream(chunks, torch.from_numpy(ngram.log_probs(self.tokens(name).numpy())).float())

        mixture = stream(split, batches)
        if weight is None:
            valid = mixture if split == "valid" else stream(
                "valid", self.eval_batches("valid", batches.streams, batches.bptt))
            model_lp, ngram_lp = stream_log_probs(model, valid, device, precision)
            weight = fit_mix_weight(model_lp, ngram_lp)
            print(f"# mixture weight of the model {weight:.4f}, fitted on the validation split", file=sys.stderr)
        self._mix_weight = float(weight)
        return mixture

    def report(self, metrics: dict[str, float], args) -> None:
        unit = "token" if self.vocab.kind == "subword" else self.vocab.kind
        print(f"loss {metrics['loss']:.4f} nats/{unit}")
        print(f"perplexity {metrics['perplexity']:.4f}")
        print(f"bits_per_{unit} {metrics[f'bits_per_{unit}']:.4f}")
        if unit == "token":
            print(f"bits_per_char {metrics['bits_per_char']:.4f}")
        if "ngram_weight" in metrics:
            per = math.log(2) * self.chars_per_token(self._scored) if unit == "token" else math.log(2)
            unit = "char" if unit == "token" else unit
            print(f"model_bits_per_{unit} {metrics['model_loss'] / per:.4f}")
            print(f"ngram_bits_per_{unit} {metrics['ngram_loss'] / per:.4f}")
            print(f"ngram_order {int(metrics['ngram_order'])}")
            print(f"ngram_weight {metrics['ngram_weight']:.4f}")

    # -- sampling ------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, command: str, parser) -> None:
        if command == "eval":
            parser.add_argument("--streams", type=_count, default=0,
                                help="parallel streams the split is cut into (default: data.batch_size)")
            parser.add_argument("--bptt", type=_count, default=0,
                                help="chunk length (default: data.eval_bptt, else trainer.bptt)")
            parser.add_argument("--dynamic", action="store_true",
                                help="dynamic evaluation: after scoring each chunk, one gradient step on it")
            parser.add_argument("--dynamic-rule", choices=("rms", "sgd"), default="rms",
                                help="update rule (default rms: steps scaled by training gradient RMS)")
            parser.add_argument("--dynamic-lr", type=float, default=2e-5, help="step size η (default 2e-5)")
            parser.add_argument("--dynamic-decay", type=float, default=0.0,
                                help="pull λ back toward the trained weights per step (default 0)")
            parser.add_argument("--dynamic-rms-batches", type=_count, default=50,
                                help="training chunks the rms rule measures gradient scales on (default 50)")
            parser.add_argument("--dynamic-rms-floor", type=float, default=0.0, metavar="F",
                                help="raise each gradient RMS to at least F times its tensor's mean (default 0; "
                                     "0.1 for subword or word models, whose rare tokens' rows have none)")
            parser.add_argument("--ngram", type=_count, default=0, metavar="K",
                                help="score a mixture of the model and a Kneser-Ney K-gram fitted on the "
                                     "training split (default 0: the model alone)")
            parser.add_argument("--ngram-weight", type=float, default=None, metavar="W",
                                help="the model's weight in the mixture (default: fitted on the validation split)")
            return
        if command != "sample":
            return
        parser.add_argument("--prime", default="\n", help="text to start from (default: a newline)")
        parser.add_argument("--length", type=_count, default=2000, help="tokens to generate (default 2000)")
        parser.add_argument("--temperature", type=_temperature, default=1.0,
                            help="> 0; below 1 safer, above 1 wilder (default 1.0)")
        parser.add_argument("--top-k", type=_count, default=0, help="sample among the k best only (0: all)")
        parser.add_argument("--greedy", action="store_true", help="always the most probable token (argmax)")
        parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible sample")
        parser.add_argument("--quiet", action="store_true", help="print only the text (no header line on stderr)")

    def sample(self, model, args) -> None:
        """Stream `--length` tokens after `--prime` to stdout, one model step per token."""
        prime, allowed, held = self._healed_prime(args.prime, strict=True)
        strategy = make_strategy(greedy=args.greedy, temperature=args.temperature, top_k=args.top_k,
                                 seed=args.seed)
        if not args.quiet:
            print(f"# {args.run_dir} ({args.checkpoint} checkpoint): {strategy!r}, seed {args.seed}, "
                  f"{args.length} {self.vocab.kind}s", file=sys.stderr)
        device = next(model.parameters()).device
        out = sys.stdout
        out.write(args.prime)
        at_line_start = args.prime.endswith("\n")
        for ids in generate(model, prime.to(device), args.length, strategy, first_allowed=allowed):
            text = self.vocab.token(int(ids[0]))
            if held:  # the first token begins with the prime's held-back piece, already printed
                text, held = text[len(held):], ""
            if self.vocab.kind == "word":  # words are joined by spaces, lines by newlines
                text, at_line_start = (text if text == "\n" or at_line_start else " " + text), text == "\n"
            out.write(text)
            out.flush()
        out.write("\n")
        out.flush()

    def _healed_prime(self, text: str, strict: bool) -> tuple[torch.Tensor, torch.Tensor | None, str]:
        """(prime ids, first_allowed, held-back text). At subword level the prime's last
        token is held back and the first generated token must begin with its text
        ("token healing"): "def " ends in a lone space that training text almost never
        has (there the space starts the next word, " name"), so the model continues
        from "def" with a token like " name" instead."""
        prime = self._encode_prime(text, strict)
        if self.vocab.kind != "subword" or prime.shape[1] < 2 or int(prime[0, -1]) == 0:
            return prime, None, ""
        held = self.vocab.token(int(prime[0, -1]))
        allowed = torch.tensor([t.startswith(held) for t in self.vocab.itos])
        allowed[0] = False
        return prime[:, :-1], allowed, held

    def _encode_prime(self, text: str, strict: bool) -> torch.Tensor:
        """(1, P) ids of the prime; strict: characters (words) outside the vocabulary are an error."""
        if not text:
            raise TaskCommandError("--prime is empty; give at least one character (the default is a newline)")
        if strict:
            unknown = self.vocab.unknown(text)
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:10])
                raise TaskCommandError(f"--prime has {len(unknown)} {self.vocab.kind}(s) the model never saw "
                                       f"in training: {shown}; use only characters of its vocabulary "
                                       f"({len(self.vocab)} symbols in vocab.json)")
        ids = self.vocab.encode(text)
        if len(ids) == 0:  # a word prime of spaces only
            ids = self.vocab.encode("\n")
        return torch.as_tensor(ids, dtype=torch.long)[None]


class NgramStream:
    """Stream chunks whose targets are (targets, each target's n-gram log-probability):
    the n-gram's log-probabilities of the split's tokens, laid out as the chunks lay
    out the tokens, so they line up target for target."""

    def __init__(self, batches: StreamBatches, log_probs: torch.Tensor):
        self.batches = batches
        self.ngram = StreamBatches(log_probs, batches.streams, batches.bptt)
        self.streams, self.bptt = batches.streams, batches.bptt

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for chunk, ngram in zip(self.batches, self.ngram):
            yield dataclasses.replace(chunk, targets=(chunk.targets, ngram.targets))


def _target_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) (N, L) in float32 from logits (N, L, V)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def stream_log_probs(model, chunks: NgramStream, device, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's and the n-gram's log-probability of every target of `chunks`, flat,
    the model's state carried from chunk to chunk (static: no adaptation)."""
    from ..train.device import autocast

    was_training = model.training
    model.eval()
    model_lp, ngram_lp, state = [], [], None
    with torch.no_grad():
        for chunk in chunks:
            chunk = chunk.to(device)
            targets, ngram = chunk.targets
            with autocast(device, precision):
                logits, state = model(chunk.inputs, state)
            model_lp.append(_target_log_probs(logits, targets).flatten().cpu())
            ngram_lp.append(ngram.flatten().cpu())
    model.train(was_training)
    return torch.cat(model_lp), torch.cat(ngram_lp)


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text} (for argmax sampling use --greedy)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value
