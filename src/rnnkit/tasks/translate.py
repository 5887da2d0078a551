"""`translate`: sequence to sequence with an encoder-decoder (with or without attention).

    rnnkit train configs/translate-numbers-en-fr.yaml
    rnnkit translate runs/numbers-en-fr "four hundred and twelve" --beam 5 --nbest 3
    rnnkit eval runs/numbers-en-fr --split test --beam 5      # exact match, BLEU, chrF, ROUGE-L; greedy vs beam
    rnnkit attention runs/numbers-en-fr "seventy-one" --plot att.png

Data (`data.source`):
  numbers   num2words pairs, English words -> French (data.source_lang, data.target_lang), the
            numbers 0..999,999 split by number so test numbers are unseen (rnnkit.data.numbers)
  execute   Learning to Execute programs -> their printed output, with the four curricula
            (rnnkit.data.execute); a fresh training set every epoch
  addition  "123+45" -> "168" (characters)
  reverse   "abcd" -> "dcba" (characters)
The vocabularies (source and target, <pad> <unk> <s> </s> first) are fitted on the
training split and saved as pairs.json with the token levels and the length limits.

Model: `rnnkit.models.Seq2Seq` (any cell; bidirectional, stacked encoder; attention
additive, dot, general or none; input feeding; scheduled sampling).
Loss: cross-entropy per target token under teacher forcing. Validation adds token
accuracy and the greedy exact match of whole sequences.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.nn import functional as F

from ..cells import cell_names
from ..config import ConfigError, Section, option
from ..data.execute import ALPHABET, CURRICULA, make_execute_pairs
from ..data.numbers import make_number_pairs, sample_by_digits, split_numbers
from ..data.pairs import (BOS_ID, EOS_ID, IGNORE, PairBatches, PairSet, PairVocab, detokenize, load_vocabs,
                          make_addition, make_reversal, pad_sources, save_vocabs, tokenize)
from ..decode import BeamSearch, Greedy, decode
from ..models.seq2seq import Seq2Seq
from ..train import distributed
from .base import Batch, LossOutput, Task, TaskCommandError, epoch_generator, cell_options, check_cell
from .registry import register_task

PAIRS_FILE = "pairs.json"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class TranslateData(Section):
    """Which pairs, how many, how they are split and batched."""

    source: Literal["numbers", "execute", "addition", "reverse"] = option(
        "numbers", help="numbers: num2words; execute: Learning to Execute; addition, reverse: sanity tasks")
    source_lang: str = option("en", help="numbers: language of the source words (num2words code)")
    target_lang: str = option("fr", help="numbers: language of the target words (fr, de, es, ...)")
    source_level: Literal["word", "char"] = option("word", help="numbers: source tokens")
    target_level: Literal["word", "char"] = option("word", help="numbers: target tokens (char for German compounds)")
    upper: int = option(1_000_000, ge=10, help="numbers: the numbers 0..upper-1 are split by number")
    valid_fraction: float = option(0.05, gt=0, lt=0.5, help="numbers: share of the numbers kept for validation")
    test_fraction: float = option(0.05, gt=0, lt=0.5, help="numbers: share of the numbers kept for test")
    train_size: int = option(20000, ge=1, help="training pairs (execute: per epoch)")
    valid_size: int = option(500, ge=1, help="validation pairs")
    test_size: int = option(2000, ge=1, help="test pairs")
    data_seed: int = option(0, ge=0, help="seed of the split and of generated pairs")
    batch_size: int = option(64, ge=1, help="pairs per training batch")
    eval_batch_size: int = option(256, ge=1, help="pairs per evaluation batch")
    max_source_length: int = option(200, ge=1, help="longest source in tokens; longer inputs are refused")
    max_target_length: int = option(0, ge=0, help="longest output when decoding (0: twice the longest "
                                                  "training target + 2)")
    digits: int = option(3, ge=1, help="addition: digits per operand at most")
    min_length: int = option(1, ge=1, help="reverse: shortest string")
    max_length: int = option(8, ge=1, help="reverse: longest string")
    alphabet: int = option(8, ge=1, le=26, help="reverse: letters a.. used")
    length: int = option(4, ge=1, help="execute: digits per number (the paper's length)")
    nesting: int = option(1, ge=1, help="execute: nesting levels (the paper's nesting)")
    curriculum: Literal["baseline", "naive", "mix", "combined"] = option(
        "baseline", help="execute: " + ", ".join(CURRICULA))
    stage_epochs: int = option(1, ge=1, help="execute, naive/combined: epochs per curriculum stage")

    def check(self):
        if self.source == "reverse" and self.min_length > self.max_length:
            raise ConfigError("min_length", self.min_length, f"at most data.max_length ({self.max_length})")
        if self.source == "numbers" and self.source_lang == self.target_lang:
            raise ConfigError("target_lang", self.target_lang, "a language other than data.source_lang")


@dataclass(frozen=True)
class TranslateModel(Section):
    """rnnkit.models.Seq2Seq."""

    cell: str = option("lstm", help="rnnkit cell: " + ", ".join(cell_names()))
    variant: str = option("", help="cell variant (lstm: peephole, cifg, ...; gru: original); '' the default")
    hidden_size: int = option(128, ge=1, help="decoder units per layer")
    encoder_hidden_size: int = option(0, ge=0, help="encoder units per direction (0: hidden_size)")
    embedding_size: int = option(0, ge=0, help="E (0: hidden_size)")
    num_layers: int = option(1, ge=1, help="stacked layers in encoder and decoder")
    bidirectional: bool = option(True, help="bidirectional encoder")
    attention: Literal["additive", "dot", "general", "none"] = option(
        "additive", help="additive (Bahdanau), dot, general (Luong), none (Sutskever's plain encoder-decoder)")
    input_feeding: bool = option(True, help="feed the previous attentional vector into the decoder")
    dropout: float = option(0.0, ge=0, lt=1, help="on embeddings, between layers, before the output")
    sampling_probability: float = option(0.0, ge=0, le=1, help="scheduled sampling: chance of feeding the "
                                                                "model's own previous token in training")
    label_smoothing: float = option(0.0, ge=0, lt=1, help="label smoothing of the cross-entropy")

    def check(self):
        check_cell(self.cell)
        encoder = (self.encoder_hidden_size or self.hidden_size) * (2 if self.bidirectional else 1)
        if self.attention == "dot" and encoder != self.hidden_size:
            raise ConfigError("attention", "dot", f"additive or general: dot attention needs the encoder states "
                              f"({encoder} wide) as wide as the decoder ({self.hidden_size})")


@register_task("translate")
class Translate(Task):
    """Encoder-decoder on paired sequences (see the module docstring)."""

    DataConfig = TranslateData
    ModelConfig = TranslateModel
    unit = "tok"

    def __init__(self, config):
        super().__init__(config)
        self.source_vocab: PairVocab | None = None
        self.target_vocab: PairVocab | None = None
        self.meta: dict = {}
        self.splits: dict[str, PairSet] = {}
        self._model = None
        self._exact = [0, 0]  # sequences, greedy exact matches (evaluation)

    # -- data --------------------------------------------------------------------------
    def _make(self, split: str, epoch: int = 0) -> PairSet:
        d = self.data_config
        size = {"train": d.train_size, "valid": d.valid_size, "test": d.test_size}[split]
        seed = d.data_seed * 1000 + SPLITS.index(split) + 7 * epoch
        if d.source == "numbers":
            pools = split_numbers(d.upper, d.valid_fraction, d.test_fraction, d.data_seed)
            numbers = sample_by_digits(pools[split], size, seed)
            try:
                return make_number_pairs(numbers, d.source_lang, d.target_lang, d.source_level, d.target_level)
            except ValueError as err:
                raise ConfigError("data.source_lang", message=str(err)) from None
        if d.source == "execute":
            if split == "train":
                return make_execute_pairs(size, d.length, d.nesting, seed, d.curriculum, epoch // d.stage_epochs)
            return make_execute_pairs(size, d.length, d.nesting, seed)
        if d.source == "addition":
            return make_addition(size, d.digits, seed)
        return make_reversal(size, d.min_length, d.max_length, d.alphabet, seed)

    @property
    def levels(self) -> tuple[str, str]:
        d = self.data_config
        return (d.source_level, d.target_level) if d.source == "numbers" else ("char", "char")

    def prepare_data(self) -> None:
        d = self.data_config
        self.splits = {split: self._make(split) for split in SPLITS}
        train = self.splits["train"]
        if self.source_vocab is None:  # a fresh run; a resumed or evaluated one loaded them
            if d.source == "execute":  # fresh programs every epoch: every character they may use
                self.source_vocab = PairVocab(sorted(set(ALPHABET)))
                self.target_vocab = PairVocab(list("-0123456789"))
            else:
                self.source_vocab = PairVocab.build(train.sources)
                self.target_vocab = PairVocab.build(train.targets)
            longest = max(len(t) for t in train.targets)
            self.meta = {"data_source": d.source, "levels": list(self.levels),
                         "max_source_length": d.max_source_length,
                         "max_target_length": d.max_target_length or 2 * longest + 2}
        elif self.meta.get("data_source") != d.source:
            raise ConfigError("data.source", d.source, f"{self.meta.get('data_source')!r}, the source of this run")
        for split, data in self.splits.items():
            too_long = [i for i, s in enumerate(data.sources) if len(s) > d.max_source_length]
            if too_long:
                i = too_long[0]
                raise ConfigError("data.max_source_length", d.max_source_length,
                                  message=f"data.max_source_length = {d.max_source_length}: {len(too_long)} "
                                          f"{split} sources are longer, e.g. {len(data.sources[i])} tokens: "
                                          f"{data.source_texts[i][:60]!r}")

    def save_assets(self, directory: Path) -> None:
        save_vocabs(Path(directory) / PAIRS_FILE, self.source_vocab, self.target_vocab, self.meta)

    def load_assets(self, directory: Path) -> None:
        path = Path(directory) / PAIRS_FILE
        if not path.exists():
            raise TaskCommandError(f"{directory}: no {PAIRS_FILE}; this is not a translate run")
        try:
            self.source_vocab, self.target_vocab, self.meta = load_vocabs(path)
        except (ValueError, KeyError) as err:
            raise TaskCommandError(f"{path}: {err}") from None

    # -- model ---------------------------------------------------------------------------
    def build_model(self) -> Seq2Seq:
        m = self.model_config
        options = cell_options(m)
        model = Seq2Seq(len(self.source_vocab), len(self.target_vocab), m.cell, hidden_size=m.hidden_size,
                        embedding_size=m.embedding_size or None, num_layers=m.num_layers,
                        bidirectional=m.bidirectional, attention=m.attention, input_feeding=m.input_feeding,
                        dropout=m.dropout, encoder_hidden_size=m.encoder_hidden_size or None, **options)
        self._model = model
        return model

    # -- batches -------------------------------------------------------------------------
    def _batches(self, data: PairSet, batch_size: int, generator=None):
        return _Batches(PairBatches(data, batch_size, self.source_vocab, self.target_vocab, generator))

    def train_batches(self, epoch: int):
        d = self.data_config
        data = self.splits["train"]
        if d.source == "execute" and epoch > 0:  # fresh programs, the curriculum at this epoch's stage
            data = self._make("train", epoch)
        return self._batches(data, d.batch_size, epoch_generator(self.config.run.seed, epoch))

    def valid_batches(self):
        return self.eval_batches("valid")

    def eval_batches(self, split: str):
        if split not in SPLITS:
            raise TaskCommandError(f"task 'translate' has no split {split!r} (it has: {', '.join(SPLITS)})")
        return self._batches(self.splits[split], self.data_config.eval_batch_size)

    # -- loss and metrics ----------------------------------------------------------------
    def compute_loss(self, model, batch: Batch, state) -> LossOutput:
        source, lengths, target_in = batch.inputs
        target = batch.targets  # (N, T), IGNORE at padding
        p = self.model_config.sampling_probability
        out = model(source, lengths, target_in, p)
        logits = out.logits.float()  # (N, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE, reduction="sum",
                               label_smoothing=self.model_config.label_smoothing) / max(batch.num_items, 1)
        real = target != IGNORE
        correct = ((logits.argmax(-1) == target) & real).sum()
        metrics = {"token_accuracy": correct.float() / max(int(real.sum()), 1)}
        if not model.training:  # evaluation: whole sequences decoded greedily, as at test time
            inner = getattr(model, "module", model)
            hyps = decode(inner.decode_step, inner.start(source, lengths), source.shape[0], Greedy(), bos=BOS_ID,
                          eos=EOS_ID, max_length=int(target.shape[1]) + 1, reorder=inner.reorder_state)
            for n, h in enumerate(hyps):
                gold = target[n][real[n]].tolist()[:-1]  # without </s>
                self._exact[0] += 1
                self._exact[1] += int(h[0].finished and h[0].tokens == gold)
        return LossOutput(loss, metrics)

    def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
        if self._exact[0]:
            total = distributed.all_reduce_sum(torch.tensor(self._exact, dtype=torch.float64))
            metrics = {**metrics, "exact_match": float(total[1] / total[0])}
        self._exact = [0, 0]
        return metrics

    # -- translation (rnnkit translate, eval, attention) ---------------------------------
    def encode_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """(source (N, S), lengths (N,), unknown tokens) of input texts; empty or too long is an error."""
        level = self.meta["levels"][0]
        limit = self.meta["max_source_length"]
        ids, unknown = [], []
        for text in texts:
            tokens = tokenize(text, level)
            if not tokens:
                raise TaskCommandError(f"input {text!r} is empty: give at least one {level}")
            if len(tokens) > limit:
                raise TaskCommandError(f"input {text[:40]!r}... has {len(tokens)} {level} tokens; this run "
                                       f"accepts at most {limit} (data.max_source_length)")
            unknown += [u for u in self.source_vocab.unknown(tokens) if u not in unknown]
            ids.append(self.source_vocab.encode(tokens))
        source, lengths = pad_sources(ids)
        return source, lengths, unknown

    def target_text(self, ids: list[int]) -> str:
        return detokenize(self.target_vocab.decode(ids), self.meta["levels"][1])

    @torch.no_grad()
    def translate(self, model: Seq2Seq, texts: list[str], strategy, batch_size: int = 256):
        """Hypotheses per text, best first: lists of (text, log-probability, ended with </s>)."""
        model.eval()
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(texts), batch_size):
            source, lengths, _ = self.encode_texts(texts[start: start + batch_size])
            source, lengths = source.to(device), lengths.to(device)
            hyps = decode(model.decode_step, model.start(source, lengths), source.shape[0], strategy, bos=BOS_ID,
                          eos=EOS_ID, max_length=self.meta["max_target_length"], reorder=model.reorder_state)
            out += [[(self.target_text(h.tokens), h.log_prob, h.finished) for h in row] for row in hyps]
        return out

    @classmethod
    def add_arguments(cls, command: str, parser) -> None:
        if command == "eval":
            parser.add_argument("--beam", type=_positive, default=5, help="beam width for the side-by-side "
                                "comparison with greedy (default 5)")
            parser.add_argument("--length-penalty", type=float, default=0.0, help="beam: alpha in log p / |y|^alpha")
            parser.add_argument("--limit", type=_positive, default=None, help="decode only the first N pairs")
            parser.add_argument("--examples", type=int, default=5, help="show N errors of the beam (default 5)")

    def report(self, metrics: dict[str, float], args) -> None:
        from ..metrics.text import text_metrics

        for key in ("loss", "token_accuracy", "exact_match"):
            if key in metrics:
                print(f"{key} {metrics[key]:.4f}")
        data = self.splits[args.split]
        if getattr(args, "limit", None):
            data = data.subset(range(min(args.limit, len(data))))
        refs = data.target_texts
        beam = BeamSearch(args.beam, length_penalty=getattr(args, "length_penalty", 0.0))
        results = {}
        for name, strategy in (("greedy", Greedy()), (f"beam {args.beam}", beam)):
            hyps = [row[0][0] for row in self.translate(self._model, data.source_texts, strategy)]
            results[name] = (hyps, text_metrics(hyps, refs, self.meta["levels"][1]))
        names = list(results)
        print(f"\n{len(refs)} {args.split} pairs   " + "".join(f"{n:>12}" for n in names))
        for key, scale in (("exact_match", 100), ("bleu", 1), ("chrf", 1), ("rouge_l", 100)):
            print(f"{key + (' %' if scale == 100 else ''):<24}" + "".join(f"{results[n][1][key] * scale:12.2f}"
                                                                         for n in names))
        errors = [(s, r, h) for s, r, h in zip(data.source_texts, refs, results[names[1]][0]) if r != h]
        for s, r, h in errors[: getattr(args, "examples", 5)]:
            print(f"  {_show(s)} -> {_show(h)}   (reference: {_show(r)})")


class _Batches:
    """PairBatches as trainer Batches: inputs (source, lengths, target_in), targets target_out."""

    def __init__(self, pairs: PairBatches):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        for b in self.pairs:
            yield Batch(inputs=(b.source, b.lengths, b.target_in), targets=b.target_out,
                        size=int((b.target_out != IGNORE).sum()))


def _show(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def require_translate_run(run_dir: str, checkpoint: str = "best", device: str = "auto"):
    """(task, model) of a translate run; a run of another task is a clear error."""
    from ..cli import CliError, load_run

    task, model, config, _ = load_run(run_dir, checkpoint, device)
    if config.task != "translate":
        raise CliError(f"{run_dir} is a {config.task!r} run; this command needs a 'translate' run "
                       "(rnnkit train configs/translate-numbers-en-fr.yaml)")
    return task, model
