"""Music as data: Bach chorales (music21's corpus) or a user's files as piano rolls and melody tokens.

Piano rolls (the JSB Chorales representation of Boulanger-Lewandowski et al. 2012):

    roll[t, k] = 1  when MIDI pitch 21 + k (A0 .. C8, 88 keys) sounds at the start of frame t
    frame t covers quarter-note offsets [t / r, (t + 1) / r), r = frames_per_quarter
                (1: quarter-note frames as in JSB Chorales; 2: eighth-note frames)

A note sounds at the start of frame t when onset <= t / r < onset + duration, so a held
note fills every frame it spans and a note shorter than a frame that starts between frame
starts (a passing eighth at quarter-note frames) is not seen, exactly as sampling a score
on a grid. All parts of the score are merged. A binary roll cannot tell a held note from a
repeated one; turned back into notes (`roll_to_stream`) consecutive frames of a key are
one note.

Transposition (as the JSB set): every piece goes to C major or C minor. The key comes
from music21's key analysis (Krumhansl-Schmuckler, `score.analyze('key')`); the shift is
the smallest interval that moves its tonic to C (-6..+5 semitones, so pieces keep their
register).

Pitch range rule: a note outside MIDI 21..108 after transposition is dropped (it has no key
in an 88-key roll) and counted; `MusicSet.dropped` and the loader's report name the piece.

Melodies: the top part (the soprano of a chorale), tied notes merged, chords reduced to
their highest pitch, as events (pitch or rest, duration in quarter notes) -> two tokens
per event: "p67" / "rest" then "d1" / "d0.5" / "d1/3" ...; pieces end with "<eos>".

The split is by piece and fixed: a piece goes to train, valid or test by a hash of
(split_seed, its name), u = sha1(...) / 2**160, train if u < 0.6, valid if u < 0.8, else
test. A piece's split does not depend on which other pieces were loaded, so a handful of
chorales (tests) split as they do in the whole corpus. With split_seed 0 the 371 chorales
split 198 / 79 / 73 (docs/music.md).

Parsing the 371 chorales takes tens of seconds: `load_chorales` converts once and keeps the
arrays in the cache (`rnnkit.data.stream.cache_dir()`: $RNNKIT_CACHE, else
$XDG_CACHE_HOME/rnnkit, else ~/.cache/rnnkit) under music/, in a file named by a hash of the
music21 version, the settings and the piece list; a progress line is shown while parsing.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

LOWEST, HIGHEST = 21, 108   # A0 .. C8, the piano
KEYS = HIGHEST - LOWEST + 1  # 88
FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
EOS, REST = "<eos>", "rest"
MUSIC_SUFFIXES = (".mid", ".midi", ".mxl", ".musicxml", ".xml", ".krn", ".abc")


class MusicError(ValueError):
    """Music data that cannot be used; the message names the file or piece and the problem."""


def require_music21():
    """The music21 module, or MusicError naming the extra to install."""
    try:
        import music21
    except ImportError:
        raise MusicError("music needs the music21 package, which is not installed: "
                         "pip install 'rnnkit[music]'") from None
    return music21


# ----------------------------------------------------------------------------- one score


@dataclass
class Piece:
    """One piece as a roll and a melody.

    roll: (T, 88) uint8; melody: list of (midi pitch or None for a rest, duration as a
    Fraction of quarter notes); shift: semitones applied; key: the analysed key before the
    shift ('' when not transposed); dropped: notes outside 21..108 that were dropped.
    """

    name: str
    roll: np.ndarray
    melody: list
    shift: int = 0
    key: str = ""
    dropped: int = 0


def key_shift(score) -> tuple[int, str]:
    """(semitones in -6..+5 that move the analysed tonic to C, the key's name such as 'A minor')."""
    key = score.analyze("key")
    shift = (-key.tonic.pitchClass) % 12
    if shift > 5:
        shift -= 12
    return shift, f"{key.tonic.name} {key.mode}"


def score_notes(score) -> list[tuple[int, Fraction, Fraction]]:
    """Every sounding pitch of every part: (midi, onset, duration) in quarter notes; grace notes left out."""
    notes = []
    for element in score.flatten().notes:
        duration = Fraction(element.quarterLength).limit_denominator(96)
        if duration <= 0:
            continue
        onset = Fraction(element.offset).limit_denominator(96)
        for pitch in element.pitches:
            notes.append((int(pitch.midi), onset, duration))
    return notes


def notes_to_roll(notes: Iterable[tuple[int, Fraction, Fraction]], frames_per_quarter: int,
                  shift: int = 0) -> tuple[np.ndarray, int]:
    """(roll (T, 88) uint8, number of notes dropped for being outside 21..108 after `shift`).

    A note (midi, onset, duration) fills frames t with onset <= t / r < onset + duration.
    """
    r = frames_per_quarter
    notes = list(notes)
    end = max((onset + duration for _, onset, duration in notes), default=Fraction(0))
    frames = int(np.ceil(float(end * r)))
    roll = np.zeros((frames, KEYS), np.uint8)
    dropped = 0
    for midi, onset, duration in notes:
        midi += shift
        if not LOWEST <= midi <= HIGHEST:
            dropped += 1
            continue
        first = -((-onset * r) // 1)              # ceil(onset * r): the first frame start inside the note
        last = -((-(onset + duration) * r) // 1)  # frames before ceil((onset + duration) * r)
        roll[int(first):int(last), midi - LOWEST] = 1
    return roll, dropped


def score_melody(score, shift: int = 0) -> list[tuple[int | None, Fraction]]:
    """The top part as (midi or None for a rest, duration) events; ties merged, chords -> top note."""
    parts = list(score.parts) or [score]
    events: list[list] = []
    for element in parts[0].flatten().notesAndRests:
        duration = Fraction(element.quarterLength).limit_denominator(96)
        if duration <= 0:
            continue
        if element.isRest:
            pitch = None
        else:
            pitch = max(int(p.midi) for p in element.pitches) + shift
        tie = getattr(element, "tie", None)
        continues = tie is not None and tie.type in ("continue", "stop")
        if events and ((continues and events[-1][0] == pitch) or (pitch is None and events[-1][0] is None)):
            events[-1][1] += duration
        else:
            events.append([pitch, duration])
    return [(p, d) for p, d in events]


def score_to_piece(score, name: str, frames_per_quarter: int, transpose: bool = True) -> Piece:
    """A parsed music21 score as a Piece (see the module docstring for the rules)."""
    shift, key = key_shift(score) if transpose else (0, "")
    roll, dropped = notes_to_roll(score_notes(score), frames_per_quarter, shift)
    return Piece(name, roll, score_melody(score, shift), shift, key, dropped)


# ----------------------------------------------------------------------------- a set of pieces


@dataclass
class MusicSet:
    """Pieces of one split: rolls (each (T_i, 88) uint8), melodies, names and per-piece facts."""

    names: list[str] = field(default_factory=list)
    rolls: list[np.ndarray] = field(default_factory=list)
    melodies: list[list] = field(default_factory=list)
    shifts: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def add(self, piece: Piece) -> None:
        self.names.append(piece.name)
        self.rolls.append(piece.roll)
        self.melodies.append(piece.melody)
        self.shifts.append(piece.shift)
        self.keys.append(piece.key)
        self.dropped.append(piece.dropped)

    def subset(self, index: Sequence[int]) -> "MusicSet":
        out = MusicSet()
        for i in index:
            out.add(self.piece(i))
        return out

    def piece(self, i: int) -> Piece:
        return Piece(self.names[i], self.rolls[i], self.melodies[i], self.shifts[i], self.keys[i], self.dropped[i])

    def index(self, name: str) -> int:
        """The position of the piece called `name` (MusicError listing a few names if absent)."""
        if name in self.names:
            return self.names.index(name)
        shown = ", ".join(self.names[:8]) + (", ..." if len(self.names) > 8 else "")
        raise MusicError(f"no piece named {name!r} here (pieces: {shown})")

    @property
    def frames(self) -> int:
        return sum(len(r) for r in self.rolls)


def split_of(name: str, seed: int = 0) -> str:
    """'train', 'valid' or 'test' for a piece name: fixed by a hash of (seed, name), about 60/20/20."""
    digest = hashlib.sha1(f"{seed}:{name}".encode()).digest()
    u = int.from_bytes(digest, "big") / 2 ** 160
    if u < SPLIT_FRACTIONS[0]:
        return "train"
    return "valid" if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1] else "test"


def split_set(data: MusicSet, seed: int = 0) -> dict[str, MusicSet]:
    """The pieces of `data` by split (see `split_of`); every split present, possibly empty."""
    index = {s: [] for s in SPLITS}
    for i, name in enumerate(data.names):
        index[split_of(name, seed)].append(i)
    return {s: data.subset(ix) for s, ix in index.items()}


# ----------------------------------------------------------------------------- loading


def chorale_names(limit: int = 0) -> list[str]:
    """music21 corpus names of the Bach chorales in Riemenschneider order ('bach/bwv269', ...).

    The catalogue lists a few harmonisations twice; each file is kept once (first place).
    limit > 0: only the first `limit` (for tests).
    """
    music21 = require_music21()
    names = []
    for name in music21.corpus.chorales.Iterator(returnType="filename"):
        if name not in names:
            names.append(name)
        if limit and len(names) >= limit:
            break
    return names


def _progress(done: int, total: int, began: float, what: str, stream) -> None:
    if stream is None:
        return
    elapsed = time.perf_counter() - began
    eta = elapsed / done * (total - done) if done else 0.0
    width = 30
    bar = "#" * (width * done // total) + "-" * (width - width * done // total)
    end = "\n" if done == total else ""
    interactive = getattr(stream, "isatty", lambda: False)()
    if interactive or done == total or done % 25 == 0:
        stream.write(f"\r{what} [{bar}] {done}/{total} {elapsed:5.1f}s (eta {eta:4.1f}s){end}"
                     if interactive else f"{what}: {done}/{total} pieces, {elapsed:.1f}s\n")
        stream.flush()


def _cache_file(kind: str, settings: dict) -> Path:
    from .stream import cache_dir

    music21 = require_music21()
    key = json.dumps({"format": FORMAT_VERSION, "music21": music21.__version__, **settings}, sort_keys=True)
    return cache_dir() / "music" / f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _save(path: Path, data: MusicSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(r) for r in data.rolls], np.int64)
    rolls = np.concatenate(data.rolls) if data.rolls else np.zeros((0, KEYS), np.uint8)
    melodies = json.dumps([[[p, str(d)] for p, d in m] for m in data.melodies])
    meta = json.dumps({"names": data.names, "shifts": data.shifts, "keys": data.keys, "dropped": data.dropped})
    tmp = path.with_suffix(f".tmp{os.getpid()}-{id(data)}.npz")  # two processes never share one
    np.savez_compressed(tmp, rolls=rolls, lengths=lengths, melodies=np.array(melodies), meta=np.array(meta))
    tmp.replace(path)  # atomic: a reader never sees half a file


def _load(path: Path) -> MusicSet:
    with np.load(path) as f:
        rolls, lengths = f["rolls"], f["lengths"]
        melodies = json.loads(str(f["melodies"]))
        meta = json.loads(str(f["meta"]))
    cuts = np.cumsum(lengths)[:-1]
    return MusicSet(meta["names"], list(np.split(rolls, cuts)) if len(lengths) else [],
                    [[(p, Fraction(d)) for p, d in m] for m in melodies], meta["shifts"], meta["keys"],
                    meta["dropped"])


def load_chorales(frames_per_quarter: int = 1, transpose: bool = True, limit: int = 0, cache: bool = True,
                  progress=sys.stderr) -> MusicSet:
    """The Bach chorales of music21's corpus as a MusicSet (all splits; see `split_set`).

    frames_per_quarter: 1 (quarter-note frames, as JSB Chorales) or 2 (eighth notes).
    transpose: to C major / C minor. limit: the first N chorales only (0: all 350 distinct files).
    cache: read/write the converted arrays in the user cache (keyed by music21 version,
    settings and pieces). progress: where the progress line goes while parsing (None: quiet).
    """
    music21 = require_music21()
    names = chorale_names(limit)
    settings = {"frames_per_quarter": frames_per_quarter, "transpose": transpose, "names": names}
    path = _cache_file("chorales", settings)
    if cache and path.exists():
        return _load(path)
    data = MusicSet()
    began = time.perf_counter()
    for i, name in enumerate(names):
        # forceSource: no music21 pickle cache, which two processes parsing at once can read
        # half-written (zlib "incomplete or truncated stream"); rnnkit caches the arrays itself
        score = music21.corpus.parse(name, forceSource=True)
        piece = score_to_piece(score, name, frames_per_quarter, transpose)
        if piece.roll.sum() == 0:
            print(f"skipped {name}: no notes", file=progress or sys.stderr)
            continue
        data.add(piece)
        _progress(i + 1, len(names), began, "parsing Bach chorales (once; cached after)", progress)
    if cache:
        _save(path, data)
    return data


def music_files(path: str | Path) -> list[Path]:
    """A file, or the music files under a directory (suffixes in MUSIC_SUFFIXES), sorted."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MusicError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MUSIC_SUFFIXES)
    if not files:
        raise MusicError(f"{path}: no music files in it (looked for {', '.join(MUSIC_SUFFIXES)})")
    return files


def load_files(path: str | Path, frames_per_quarter: int = 1, transpose: bool = True,
               report=sys.stderr) -> MusicSet:
    """A user's MIDI / MusicXML / kern / ABC files (a file or a directory) as a MusicSet.

    A file that does not parse, or that holds no notes in 21..108, is named on `report`
    and skipped; notes outside 21..108 are dropped and counted per file. MusicError when
    nothing usable is left. Piece names are the paths relative to `path`.
    """
    music21 = require_music21()
    root = Path(path).expanduser()
    files = music_files(root)
    data = MusicSet()
    for file in files:
        name = str(file.relative_to(root)) if root.is_dir() else file.name
        try:
            score = music21.converter.parse(str(file))
        except Exception as err:  # noqa: BLE001 - music21 raises many kinds; name the file and go on
            first_line = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            print(f"skipped {file}: does not parse as music ({first_line})", file=report)
            continue
        piece = score_to_piece(score, name, frames_per_quarter, transpose)
        if piece.dropped:
            print(f"{file}: dropped {piece.dropped} note(s) outside MIDI {LOWEST}..{HIGHEST} (A0..C8)"
                  + (f" after transposing {piece.shift:+d} semitones" if piece.shift else ""), file=report)
        if piece.roll.sum() == 0:
            print(f"skipped {file}: no notes" + (" in MIDI 21..108" if piece.dropped else ""), file=report)
            continue
        data.add(piece)
    if not len(data):
        raise MusicError(f"{root}: none of its {len(files)} file(s) gave a piece with notes")
    return data


# ----------------------------------------------------------------------------- back to music


def roll_to_stream(roll: np.ndarray, frames_per_quarter: int = 1, tempo: int = 0):
    """A music21 Score of one Part from a roll (T, 88): consecutive frames of a key become one note.

    Notes that start together and last as long become one chord. tempo > 0 adds a
    metronome mark (quarter notes per minute).
    """
    music21 = require_music21()
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != KEYS:
        raise MusicError(f"a piano roll must be (frames, {KEYS}), got shape {tuple(roll.shape)}")
    step = Fraction(1, frames_per_quarter)
    events: dict[Fraction, list[tuple[int, Fraction]]] = {}
    for k in range(KEYS):
        column = np.concatenate([[0], roll[:, k] > 0, [0]]).astype(np.int8)
        starts = np.flatnonzero(np.diff(column) == 1)
        ends = np.flatnonzero(np.diff(column) == -1)
        for s, e in zip(starts, ends):
            events.setdefault(int(s) * step, []).append((LOWEST + k, int(e - s) * step))
    part = music21.stream.Part()
    if tempo:
        part.insert(0, music21.tempo.MetronomeMark(number=tempo))
    for onset in sorted(events):
        by_duration: dict[Fraction, list[int]] = {}
        for midi, duration in events[onset]:
            by_duration.setdefault(duration, []).append(midi)
        for duration, pitches in by_duration.items():
            if len(pitches) == 1:
                element = music21.note.Note(pitches[0], quarterLength=duration)
            else:
                element = music21.chord.Chord(sorted(pitches), quarterLength=duration)
            part.insert(onset, element)
    score = music21.stream.Score()
    score.insert(0, part)
    return score


def melody_to_stream(events: Sequence[tuple[int | None, Fraction]], tempo: int = 0):
    """A one-part music21 Score from (midi or None, duration) events."""
    music21 = require_music21()
    part = music21.stream.Part()
    if tempo:
        part.insert(0, music21.tempo.MetronomeMark(number=tempo))
    offset = Fraction(0)
    for pitch, duration in events:
        element = (music21.note.Rest(quarterLength=duration) if pitch is None
                   else music21.note.Note(int(pitch), quarterLength=duration))
        part.insert(offset, element)
        offset += duration
    score = music21.stream.Score()
    score.insert(0, part)
    return score


def write_score(score, path: str | Path) -> Path:
    """Write a music21 score as MIDI (.mid/.midi) or MusicXML (.musicxml/.xml/.mxl) by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    formats = {".mid": "midi", ".midi": "midi", ".musicxml": "musicxml", ".xml": "musicxml", ".mxl": "mxl"}
    if suffix not in formats:
        raise MusicError(f"{path}: cannot tell the format from the suffix {suffix!r} "
                         f"(use one of {', '.join(formats)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    score.write(formats[suffix], fp=str(path))
    return path


# ----------------------------------------------------------------------------- melody tokens


def duration_token(duration: Fraction) -> str:
    """'d1', 'd0.5', 'd1/3': a duration in quarter notes as a token."""
    duration = Fraction(duration)
    if duration.denominator in (1, 2, 4, 8, 16):
        text = f"{float(duration):g}"
    else:
        text = f"{duration.numerator}/{duration.denominator}"
    return "d" + text


def pitch_token(pitch: int | None) -> str:
    return REST if pitch is None else f"p{int(pitch)}"


def melody_tokens(melody: Sequence[tuple[int | None, Fraction]]) -> list[str]:
    """Events -> tokens: pitch then duration per event, '<eos>' at the end."""
    out = []
    for pitch, duration in melody:
        out += [pitch_token(pitch), duration_token(duration)]
    return out + [EOS]


def tokens_to_melody(tokens: Sequence[str]) -> list[tuple[int | None, Fraction]]:
    """Tokens -> events; stops at '<eos>'. MusicError for a token out of place (a pitch where a duration belongs)."""
    events = []
    pitch: object = "none"
    for i, token in enumerate(tokens):
        if token == EOS:
            break
        if pitch == "none":
            if token != REST and not token.startswith("p"):
                raise MusicError(f"token {i} is {token!r}: expected a pitch ('p60') or 'rest'")
            pitch = None if token == REST else int(token[1:])
        else:
            if not token.startswith("d"):
                raise MusicError(f"token {i} is {token!r}: expected a duration ('d1', 'd0.5')")
            events.append((pitch, Fraction(token[1:])))
            pitch = "none"
    return events
