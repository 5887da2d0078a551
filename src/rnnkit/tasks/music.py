"""`music`: polyphonic piano rolls (Bach chorales) with Bernoulli outputs, or melodies as a token LM.

    rnnkit train configs/chorales-lstm.yaml
    rnnkit eval runs/chorales-lstm --split test      # NLL per frame and per note, frame accuracy
    rnnkit generate runs/chorales-lstm --prime-frames 8 --length 64 --out chorale.mid --plot roll.png

Data (`data.source`): `chorales`, music21's Bach chorales, or `files`, a user's MIDI /
MusicXML files under `data.path` (rnnkit.data.music: the roll rules, transposition to C,
the 88-key pitch-range rule, the fixed split by piece, the cache).

`data.form: roll` (polyphonic). Each piece is a (T, 88) binary roll at `data.frames_per_quarter`
frames per quarter note; the model (rnnkit.models.polyphonic.PolyphonicModel) reads the
previous frame (a zero frame before the first) and gives 88 independent Bernoulli
probabilities for the next. Loss: negative log-likelihood in nats per frame, summed over the
88 keys, averaged over the real frames of the batch (Chung et al. 2014's normalisation;
rnnkit.metrics.music). Evaluation adds the NLL per note (/ 88) and Boulanger-Lewandowski's
frame-level accuracy TP / (TP + FP + FN) counted over the whole split.

`data.form: melody`. The top part of each piece as (pitch, duration) events, two tokens
per event, "<eos>" at the end; the model is rnnkit.models.LanguageModel over that
vocabulary (fitted on the training split, "<unk>" for the rest), loss the mean
cross-entropy per token.

Batches are whole pieces, padded, shuffled per epoch (full BPTT; padded steps are left out
of the loss, and the model is causal so they cannot change earlier outputs).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from ..cells import cell_names
from ..config import ConfigError, Section, option
from ..data.music import (EOS, KEYS, REST, SPLITS, MusicError, MusicSet, Piece, load_chorales, load_files,
                          melody_to_stream, melody_tokens, roll_to_stream, split_set, tokens_to_melody, write_score)
from ..metrics.music import frame_accuracy, frame_counts, frame_nll, music_metrics, predicted_counts
from ..models.lm import LanguageModel
from ..models.polyphonic import PolyphonicEnsemble, PolyphonicModel
from ..train import distributed
from .base import Batch, LossOutput, Task, TaskCommandError, epoch_generator, cell_options, check_cell
from .registry import register_task

ASSETS_FILE = "music.json"
UNK = "<unk>"
IGNORE = -100


@dataclass(frozen=True)
class MusicData(Section):
    """Which music, as rolls or melodies, and how it is batched."""

    source: Literal["chorales", "files"] = option(
        "chorales", help="chorales: music21's Bach chorales; files: data.path (MIDI, MusicXML, ...)")
    path: str = option("", help="source=files: a music file or a directory of them")
    form: Literal["roll", "melody"] = option("roll", help="roll: 88-key piano rolls (polyphonic); "
                                                          "melody: the top part as pitch/duration tokens")
    frames_per_quarter: int = option(1, ge=1, le=4, help="roll frames per quarter note: 1 as JSB Chorales, "
                                                         "2 eighth notes")
    transpose: bool = option(True, help="transpose every piece to C major / C minor")
    limit: int = option(0, ge=0, help="chorales: only the first N (0: all 350 distinct files; for quick tests)")
    split_seed: int = option(0, ge=0, help="seed of the fixed 60/20/20 split by piece")
    batch_size: int = option(16, ge=1, help="pieces per training batch")
    eval_batch_size: int = option(64, ge=1, help="pieces per evaluation batch")
    cache: bool = option(True, help="keep the converted chorales in $RNNKIT_CACHE (~/.cache/rnnkit)")

    def check(self):
        if self.source == "files" and not self.path:
            raise ConfigError("path", self.path, "a music file or directory when source is 'files'")


@dataclass(frozen=True)
class MusicModel(Section):
    """Recurrent -> 88 sigmoids (roll), or Embedding -> Recurrent -> softmax (melody)."""

    cell: str = option("lstm", help="rnnkit cell: " + ", ".join(cell_names()))
    variant: str = option("", help="cell variant (lstm: peephole, nfg, cifg, ...; gru: original); '' the default")
    nonlinearity: str = option("", help="rnn cell: tanh or relu ('' the default)")
    hidden_size: int = option(36, ge=1, help="H, units per layer")
    num_layers: int = option(1, ge=1, help="stacked recurrent layers")
    embedding_size: int = option(0, ge=0, help="melody: token embedding size (0: hidden_size)")
    dropout: float = option(0.0, ge=0, lt=1, help="between layers and before the output layer")
    input_dropout: float = option(0.0, ge=0, lt=1, help="roll: drop each input note with this probability "
                                                        "while training")
    ensemble: int = option(1, ge=1, help="roll: E independently initialised models, each key's probability "
                                         "their mean (each member trains on its own loss)")
    output: Literal["independent", "autoregressive"] = option(
        "independent", help="roll: keys independent given the past (Chung et al.), or each key also given the keys "
                            "below it in its frame")

    def check(self):
        check_cell(self.cell)


@register_task("music")
class Music(Task):
    """Polyphonic rolls or melodies (see the module docstring)."""

    DataConfig = MusicData
    ModelConfig = MusicModel
    unit = "frame"

    def __init__(self, config):
        super().__init__(config)
        self.assets: dict | None = None  # form, frames_per_quarter, tokens (melody): music.json
        self.splits: dict[str, MusicSet] = {}
        self._counts: torch.Tensor | None = None  # (TP, FP, FN) summed over an evaluation
        self.unit = "frame" if self.data_config.form == "roll" else "tok"

    # -- data ------------------------------------------------------------------------------
    def load_music(self, report=sys.stderr) -> MusicSet:
        """All pieces of the configured source (chorales from the cache after the first parse)."""
        d = self.data_config
        try:
            if d.source == "files":
                return load_files(d.path, d.frames_per_quarter, d.transpose, report=report)
            return load_chorales(d.frames_per_quarter, d.transpose, d.limit, cache=d.cache, progress=report)
        except MusicError as err:
            key = "data.path" if d.source == "files" else "data.source"
            raise ConfigError(key, message=f"data.source={d.source}: {err}") from None

    def prepare_data(self) -> None:
        d = self.data_config
        self.splits = split_set(self.load_music(), d.split_seed)
        if not len(self.splits["train"]):
            raise ConfigError("data.limit", d.limit, message=f"data.source={d.source}: no piece fell into the "
                              f"training split ({sum(len(s) for s in self.splits.values())} pieces in all); "
                              "use more pieces")
        if self.assets is None:  # a fresh run; a resumed or evaluated one loaded them
            self.assets = {"form": d.form, "frames_per_quarter": d.frames_per_quarter, "keys": KEYS}
            if d.form == "melody":
                seen = sorted({t for m in self.splits["train"].melodies for t in melody_tokens(m)})
                self.assets["tokens"] = [UNK] + seen

    def save_assets(self, directory: Path) -> None:
        (Path(directory) / ASSETS_FILE).write_text(json.dumps(self.assets, indent=1))

    def load_assets(self, directory: Path) -> None:
        path = Path(directory) / ASSETS_FILE
        if not path.exists():
            raise TaskCommandError(f"{directory}: no {ASSETS_FILE}; this is not a music run")
        self.assets = json.loads(path.read_text())

    @property
    def form(self) -> str:
        return self.assets["form"] if self.assets else self.data_config.form

    def encode_melody(self, melody) -> list[int]:
        index = {t: i for i, t in enumerate(self.assets["tokens"])}
        return [index.get(t, 0) for t in melody_tokens(melody)]

    # -- model -----------------------------------------------------------------------------
    def build_model(self):
        m = self.model_config
        if self.form == "roll":
            if m.ensemble > 1 and m.output != "independent":
                raise ConfigError("model.ensemble", m.ensemble, "1 with model.output autoregressive")
            members = [PolyphonicModel(KEYS, m.cell, m.hidden_size, m.num_layers, m.dropout,
                                       input_dropout=m.input_dropout, output=m.output, **cell_options(m))
                       for _ in range(m.ensemble)]
            return members[0] if m.ensemble == 1 else PolyphonicEnsemble(members)
        if m.ensemble > 1:
            raise ConfigError("model.ensemble", m.ensemble, "1 for melodies (ensembles are for piano rolls)")
        return LanguageModel(len(self.assets["tokens"]), m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                             embedding_size=m.embedding_size or None, dropout=m.dropout, **cell_options(m))

    # -- batches ---------------------------------------------------------------------------
    def _batches(self, data: MusicSet, batch_size: int, generator=None):
        if self.form == "roll":
            return RollBatches(data.rolls, batch_size, generator)
        eos = self.assets["tokens"].index(EOS) if EOS in self.assets["tokens"] else 0
        return TokenBatches([self.encode_melody(m) for m in data.melodies], batch_size, eos, generator)

    def train_batches(self, epoch: int):
        gen = epoch_generator(self.config.run.seed, epoch)
        return self._batches(self.splits["train"], self.data_config.batch_size, gen)

    def valid_batches(self):
        if not len(self.splits.get("valid", ())):
            return ()
        return self._batches(self.splits["valid"], self.data_config.eval_batch_size)

    def eval_batches(self, split: str):
        if split not in SPLITS:
            raise TaskCommandError(f"task 'music' has no split {split!r} (it has: {', '.join(SPLITS)})")
        if not len(self.splits[split]):
            raise TaskCommandError(f"the {split} split holds no pieces (data.limit {self.data_config.limit})")
        return self._batches(self.splits[split], self.data_config.eval_batch_size)

    # -- loss and metrics ------------------------------------------------------------------
    def compute_loss(self, model, batch: Batch, state) -> LossOutput:
        if self.form == "melody":
            logits, _ = model(batch.inputs)  # (N, L, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(), ignore_index=IGNORE,
                                   reduction="sum") / max(batch.num_items, 1)
            return LossOutput(loss, {}, None)
        steps = torch.arange(batch.targets.shape[1], device=batch.targets.device)
        mask = steps[None, :] < batch.lengths.to(steps.device)[:, None]  # (N, L) real frames
        if self.model_config.ensemble > 1:
            members, _ = model(batch.inputs, members=True)  # (E, N, L, 88)
            if model.training:  # each member on its own loss
                nll = frame_nll(members, batch.targets.expand_as(members)).mean(0)  # (N, L)
            else:  # the ensemble's: the members' predictions of each frame mixed
                nll = PolyphonicEnsemble.mixture_nll(members, batch.targets)
                logits = PolyphonicEnsemble.mean_probability_logits(members)  # each key's marginal
        else:
            logits, _ = model(batch.inputs, targets=batch.targets)  # (N, L, 88) logits of each next frame
            nll = frame_nll(logits, batch.targets)  # (N, L) nats per frame, summed over keys
        loss = (nll * mask).sum() / max(batch.num_items, 1)
        if not model.training:  # evaluation: exact frame accuracy over the whole split
            if self.model_config.output == "autoregressive":  # decoded key by key from the true past
                counts = predicted_counts(model.greedy_frames(batch.inputs), batch.targets, mask).cpu()
            else:
                counts = frame_counts(logits, batch.targets, mask).cpu()
            self._counts = counts if self._counts is None else self._counts + counts
        return LossOutput(loss, {}, None)

    def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
        metrics = dict(metrics)
        if self.form == "melody":
            metrics["perplexity"] = math.exp(min(metrics["loss"], 50.0))
            metrics["bits_per_token"] = metrics["loss"] / math.log(2)
            return metrics
        metrics.update(music_metrics(metrics["loss"]))
        if self._counts is not None:
            tp, fp, fn = distributed.all_reduce_sum(self._counts).tolist()
            metrics["frame_accuracy"] = frame_accuracy(tp, fp, fn)
        self._counts = None
        return metrics

    def report(self, metrics: dict[str, float], args) -> None:
        split = self.splits.get(getattr(args, "split", "valid"))
        if split is not None:
            print(f"pieces {len(split)}, frames {split.frames}" if self.form == "roll" else f"pieces {len(split)}")
        keys = (("nll_per_frame", "nats, summed over 88 keys"), ("nll_per_note", "nats per key per frame"),
                ("frame_accuracy", "TP/(TP+FP+FN)")) if self.form == "roll" else (
                ("loss", "nats per token"), ("perplexity", ""), ("bits_per_token", ""))
        for key, what in keys:
            if key in metrics:
                print(f"{key} {metrics[key]:.4f}" + (f"  ({what})" if what else ""))

    # -- generation ------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, command: str, parser) -> None:
        if command == "sample":
            from ..commands.generate import add_generate_arguments  # one definition for both commands

            add_generate_arguments(parser)

    def sample(self, model, args) -> None:
        """`rnnkit sample RUN_DIR`: the same as `rnnkit generate RUN_DIR`."""
        if not args.out and not args.plot:
            raise TaskCommandError("a music sample is written to files: give --out FILE.mid and/or --plot FILE.png")
        self.generate(model, args)

    def prime_piece(self, args):
        """(name, roll or melody) that generation starts from: --prime-file, else a piece of --split."""
        if args.prime_frames == 0 and not getattr(args, "prime_file", None):  # from silence: no data needed
            return "silence", Piece("silence", np.zeros((0, KEYS), np.uint8), [])
        if getattr(args, "prime_file", None):
            d = self.data_config
            pieces = load_files(args.prime_file, self.assets["frames_per_quarter"], d.transpose)
            return pieces.names[0], pieces.piece(0)
        if not self.splits:
            self.prepare_data()
        data = self.splits[args.split]
        if not len(data):
            raise TaskCommandError(f"the {args.split} split holds no pieces to start from; use --split or --prime-file")
        try:
            i = data.index(args.piece) if args.piece else min(args.index, len(data) - 1)
        except MusicError as err:
            raise TaskCommandError(f"--piece: {err}") from None
        return data.names[i], data.piece(i)

    def generate(self, model, args) -> dict:
        """Continue a piece's first --prime-frames frames (melody: events) by --length more; write --out.

        Returns {"name", "prime", "output"}: the primed piece's name, the prime and the whole
        result (roll (P + length, 88) uint8, or melody events).
        """
        if args.prime_frames < 0 or args.length < 1:
            raise TaskCommandError("--prime-frames must be >= 0 and --length >= 1")
        if not args.temperature > 0:
            raise TaskCommandError(f"--temperature must be > 0, got {args.temperature} (for the most likely "
                                   "frames use --greedy)")
        name, piece = self.prime_piece(args)
        generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
        device = next(model.parameters()).device
        fpq = self.assets["frames_per_quarter"]
        if self.form == "roll":
            prime = piece.roll[: args.prime_frames]
            if len(prime) < args.prime_frames:
                print(f"note: {name} has only {len(prime)} frames; priming with all of them", file=sys.stderr)
            x = torch.as_tensor(prime, dtype=torch.float32, device=device)[None]  # (1, P, 88)
            roll = model.continue_roll(x, args.length, args.temperature, args.greedy, generator)[0]
            output = roll.round().to(torch.uint8).cpu().numpy()
            score = roll_to_stream(output, fpq, tempo=args.tempo)
        else:
            prime = piece.melody[: args.prime_frames]
            output = self._continue_melody(model, prime, args.length, args, device)
            score = melody_to_stream(output, tempo=args.tempo)
        written = [write_score(score, path) for path in args.out or []]
        if getattr(args, "plot", None):
            if self.form != "roll":
                raise TaskCommandError("--plot draws a piano roll: only for runs with data.form roll")
            written.append(plot_roll(output, args.plot, prime_frames=len(prime), frames_per_quarter=fpq,
                                     title=f"{name}: {len(prime)} frames primed, {args.length} generated"))
        if not getattr(args, "quiet", False):
            what = "frames" if self.form == "roll" else "events"
            print(f"primed with the first {len(prime)} {what} of {name}; generated {args.length}", file=sys.stderr)
        for path in written:
            print(path)
        return {"name": name, "prime": prime, "output": output}

    @torch.inference_mode()
    def _continue_melody(self, model, prime, length: int, args, device) -> list:
        """The prime events, then up to `length` sampled events (fewer if '<eos>' comes)."""
        from ..decode import make_strategy

        tokens = self.assets["tokens"]
        eos = tokens.index(EOS)
        is_pitch = torch.tensor([t == REST or t == EOS or t.startswith("p") for t in tokens], device=device)
        is_duration = torch.tensor([t.startswith("d") for t in tokens], device=device)
        ids = [eos] + self.encode_melody(prime)[:-1]  # '<eos>' starts a piece; drop the prime's own end
        strategy = make_strategy(greedy=args.greedy, temperature=args.temperature,
                                 seed=args.seed if args.seed is not None else None)
        model.eval()
        logits, state = model(torch.tensor([ids], device=device))
        logits = logits[:, -1]  # (1, V)
        out = []
        for _ in range(2 * length):
            allowed = is_pitch if len(out) % 2 == 0 else is_duration  # the event grammar: pitch, duration
            choice = int(strategy.select(logits.masked_fill(~allowed, float("-inf"))).tokens[0])
            if choice == eos:
                break
            out.append(tokens[choice])
            logits, state = model.step(torch.tensor([choice], device=device), state)
        generated = tokens_to_melody([t for t in out if t != UNK][: len(out) // 2 * 2])
        return list(prime) + generated


def plot_roll(roll: np.ndarray, path, prime_frames: int = 0, frames_per_quarter: int = 1, title: str = "") -> Path:
    """Draw a roll (T, 88) as a PNG: time across, pitch up, the primed frames shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TaskCommandError("--plot needs matplotlib: pip install 'rnnkit[music]'") from None
    from ..data.music import LOWEST

    roll = np.asarray(roll)
    on = np.flatnonzero(roll.any(0))
    low, high = (on.min() - 2, on.max() + 3) if len(on) else (30, 60)
    fig, ax = plt.subplots(figsize=(max(6.0, len(roll) / 8), 3.5), dpi=120)
    ax.imshow(roll[:, low:high].T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
              extent=(0, len(roll) / frames_per_quarter, LOWEST + low - 0.5, LOWEST + high - 0.5))
    if prime_frames:
        ax.axvspan(0, prime_frames / frames_per_quarter, color="tab:blue", alpha=0.15, label="prime")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


class RollBatches:
    """Padded batches of whole rolls: inputs (N, L, 88) the previous frames, targets (N, L, 88), lengths (N,)."""

    def __init__(self, rolls: list[np.ndarray], batch_size: int, generator: torch.Generator | None = None):
        self.rolls, self.batch_size = rolls, batch_size
        order = torch.randperm(len(rolls), generator=generator) if generator is not None else torch.arange(len(rolls))
        self.order = order.tolist()

    def __len__(self) -> int:
        return (len(self.rolls) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start:start + self.batch_size]
            lengths = torch.tensor([len(self.rolls[i]) for i in index])
            targets = torch.zeros(len(index), int(lengths.max()), KEYS)  # (N, L, 88)
            for row, i in enumerate(index):
                targets[row, : lengths[row]] = torch.from_numpy(self.rolls[i]).float()
            inputs = PolyphonicModel.shift_right(targets)
            yield Batch(inputs=inputs, targets=targets, lengths=lengths, size=int(lengths.sum()))


class TokenBatches:
    """Padded batches of token sequences: inputs '<eos>' + x[:-1], targets x (padding IGNORE)."""

    def __init__(self, sequences: list[list[int]], batch_size: int, eos: int, generator=None):
        self.sequences, self.batch_size, self.eos = sequences, batch_size, eos
        n = len(sequences)
        self.order = (torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)).tolist()

    def __len__(self) -> int:
        return (len(self.sequences) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start:start + self.batch_size]
            length = max(len(self.sequences[i]) for i in index)
            inputs = torch.full((len(index), length), self.eos, dtype=torch.long)
            targets = torch.full((len(index), length), IGNORE, dtype=torch.long)
            for row, i in enumerate(index):
                seq = torch.tensor(self.sequences[i])
                targets[row, : len(seq)] = seq
                inputs[row, 1: len(seq)] = seq[:-1]
            lengths = torch.tensor([len(self.sequences[i]) for i in index])
            yield Batch(inputs=inputs, targets=targets, lengths=lengths, size=int(lengths.sum()))

