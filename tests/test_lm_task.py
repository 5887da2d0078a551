"""The `charlm` task end to end through the `rnnkit` command: train, sample, eval, and bad input."""
import hashlib
import math
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import yaml

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from toytask import one_thread_fixture  # noqa: E402

from rnnkit.cells import cell_names  # noqa: E402
from rnnkit.cli import main  # noqa: E402

_one_thread = one_thread_fixture()
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def corpus(tmp_path):
    """Real text: one standard-library module (~19 KB of Python)."""
    path = tmp_path / "corpus" / "textwrap.py"
    path.parent.mkdir()
    shutil.copy(STDLIB / "textwrap.py", path)
    return path


def recipe(tmp_path, corpus, *extra, name="r.yaml"):
    data = {
        "task": "charlm",
        "data": {"source": "path", "path": str(corpus), "batch_size": 4, "sample_length": 30},
        "model": {"cell": "lstm", "hidden_size": 24, "num_layers": 1},
        "optim": {"name": "adam", "lr": 0.01},
        "trainer": {"bptt": 20, "max_steps": 12, "eval_every": 6, "eval_batches": 4, "clip_norm": 5.0},
        "run": {"dir": str(tmp_path / "run"), "seed": 0, "device": "cpu"},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return [str(path), *extra]


def digest(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(tmp_path, corpus, capsys):
    assert main(["train", *recipe(tmp_path, corpus)]) == 0
    err = capsys.readouterr().err
    return tmp_path / "run", err


def test_train_prints_validation_bits_per_char_and_samples(trained):
    run, err = trained
    assert "valid step 6 epoch 0:" in err and "bits_per_char" in err and "perplexity" in err
    assert err.count("---- sample ----\ndef ") == 2
    assert (run / "vocab.json").exists() and (run / "best" / "vocab.json").exists()


def test_sample_streams_text_after_the_prime(trained, capsys):
    run, _ = trained
    assert main(["sample", str(run), "--prime", "def ", "--length", "50", "--temperature", "0.8",
                 "--seed", "123"]) == 0
    first = capsys.readouterr()
    assert first.out.startswith("def ") and len(first.out) == len("def ") + 50 + 1
    assert "Sample(temperature=0.8" in first.err
    main(["sample", str(run), "--prime", "def ", "--length", "50", "--temperature", "0.8",
          "--seed", "123", "--quiet"])
    again = capsys.readouterr()
    assert again.out == first.out and again.err == ""  # seeded: the same text; quiet: no header
    main(["sample", str(run), "--prime", "if ", "--length", "20", "--greedy", "--top-k", "3", "--quiet"])
    greedy = capsys.readouterr().out
    main(["sample", str(run), "--prime", "if ", "--length", "20", "--greedy", "--quiet", "--seed", "9"])
    assert capsys.readouterr().out == greedy


def test_eval_prints_loss_perplexity_and_bits_per_char(trained, capsys):
    run, _ = trained
    assert main(["eval", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(" ", 1) for line in out.splitlines()[1:])
    loss = float(lines["loss"].split()[0])
    assert float(lines["perplexity"]) == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-3)
    assert float(lines["bits_per_char"]) == pytest.approx(loss / 0.6931471805599453, rel=1e-3)
    assert main(["eval", str(run), "--split", "nowhere"]) == 1
    assert "no split 'nowhere'" in capsys.readouterr().err


def test_bad_prime_and_temperature_are_clear_errors_that_leave_the_run_alone(trained, capsys):
    run, _ = trained
    before = digest(run)
    assert main(["sample", str(run), "--prime", "déf ☃"]) == 1
    err = capsys.readouterr().err
    assert "--prime has 2 char(s) the model never saw" in err and "'☃'" in err and "'é'" in err
    for value in ("0", "-1", "hot"):
        with pytest.raises(SystemExit) as exit_code:
            main(["sample", str(run), "--temperature", value])
        assert exit_code.value.code == 2
        assert "--temperature" in capsys.readouterr().err
    assert digest(run) == before


def test_a_run_dir_that_is_not_a_language_model(trained, tmp_path, capsys):
    run, _ = trained
    assert main(["sample", str(tmp_path)]) == 1
    assert "no checkpoint found" in capsys.readouterr().err
    (run / "best" / "vocab.json").unlink()
    assert main(["sample", str(run)]) == 1
    assert "not a language-model run" in capsys.readouterr().err


def empty_directory(d):
    (d / "empty").mkdir()
    (d / "empty" / "a.txt").write_text("")
    return d / "empty"


def tiny_file(d):
    (d / "tiny.txt").write_text("x = 1\n" * 20)  # 108 training characters
    return d / "tiny.txt"


def directory_with_binary(d):
    (d / "bin").mkdir()
    (d / "bin" / "notes.txt").write_text("text\n" * 500)
    (d / "bin" / "blob.dat").write_bytes(b"\0\1\2")
    return d / "bin"


@pytest.mark.parametrize("make, extra, message", [
    (empty_directory, [], "is empty"),
    (tiny_file, ["data.batch_size=8"], "fewer than one batch of batch_size 8 streams x (bptt 20 + 1)"),
    (directory_with_binary, [], "binary file(s) in the corpus: blob.dat"),
    (None, ["model.cell=lstn"], "did you mean 'lstm'"),
])
def test_bad_corpora_and_recipes_stop_before_the_run_dir_is_written(tmp_path, corpus, capsys, make, extra, message):
    path = make(tmp_path) if make else corpus
    assert main(["train", *recipe(tmp_path, path, *extra)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_word_level_run_samples_words(tmp_path, corpus, capsys):
    args = recipe(tmp_path, corpus, "data.level=word", "data.vocab_size=300", "trainer.bptt=8",
                  "trainer.eval_every=0", "trainer.max_steps=6")
    assert main(["train", *args]) == 0  # 302 words: ids stored as uint16
    assert "bits_per_word" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "run"), "--prime", "def", "--length", "15", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out.split()) >= 5


def test_subword_level_run_reports_bits_per_character_of_the_text(tmp_path, corpus, capsys):
    from rnnkit.data import load_corpus, load_vocab

    args = recipe(tmp_path, corpus, "data.level=subword", "data.vocab_size=150", "trainer.bptt=8",
                  "trainer.eval_every=0", "trainer.max_steps=6")
    assert main(["train", *args]) == 0
    err = capsys.readouterr().err
    assert "merges learnt on the training split" in err and "bits_per_token" in err and "bits_per_char" in err
    vocab = load_vocab(tmp_path / "run" / "vocab.json")
    assert vocab.kind == "subword" and len(vocab) == 150
    assert main(["eval", str(tmp_path / "run"), "--split", "test"]) == 0
    lines = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    loss = float(lines["loss"].split()[0])
    assert lines["loss"].endswith("nats/token")
    assert float(lines["bits_per_token"]) == pytest.approx(loss / math.log(2), rel=1e-3)
    text = load_corpus("path", str(corpus)).text("test")  # the same default split as the recipe
    tokens = len(vocab.encode(text))
    assert tokens < 0.7 * len(text)  # merged pieces: fewer tokens than characters
    assert float(lines["bits_per_char"]) == pytest.approx(loss / math.log(2) * tokens / len(text), rel=1e-3)
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--ngram", "3"]) == 0
    mixed = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert {"model_bits_per_char", "ngram_bits_per_char", "ngram_weight"} <= set(mixed)
    assert float(mixed["model_bits_per_char"]) == pytest.approx(float(lines["bits_per_char"]), rel=1e-3)
    assert main(["sample", str(tmp_path / "run"), "--prime", "def ", "--length", "15", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out) > len("def ") + 15  # tokens of several characters


def test_subword_sampling_heals_the_prime_last_token(tmp_path, corpus, capsys):
    from rnnkit.tasks.charlm import CharLM
    from rnnkit.config import load_config

    args = recipe(tmp_path, corpus, "data.level=subword", "data.vocab_size=150", "trainer.bptt=8",
                  "trainer.eval_every=0", "trainer.max_steps=2")
    assert main(["train", *args]) == 0
    capsys.readouterr()
    task = CharLM(load_config(args[0], args[1:]))
    task.load_assets(tmp_path / "run")
    prime, allowed, held = task._healed_prime("def ", strict=True)
    assert held == " " and task.vocab.decode(prime[0].tolist()) == "def"
    assert all(task.vocab.itos[i].startswith(" ") for i in allowed.nonzero().flatten().tolist())
    assert allowed.sum() > 10 and not allowed[0]
    prime, allowed, held = task._healed_prime("d", strict=True)  # one token: nothing to hold back
    assert allowed is None and held == "" and prime.tolist() == [[task.vocab.stoi["d"]]]
    for seed in range(3):
        assert main(["sample", str(tmp_path / "run"), "--prime", "x = 1\n", "--length", "6", "--quiet",
                     "--seed", str(seed)]) == 0
        assert capsys.readouterr().out.startswith("x = 1\n")


@pytest.mark.parametrize("cell", sorted(set(cell_names()) - {"lstm"}))
def test_every_cell_trains_by_name_in_the_recipe(tmp_path, corpus, capsys, cell):
    args = recipe(tmp_path, corpus, f"model.cell={cell}", "trainer.max_steps=3", "trainer.eval_every=0",
                  "trainer.eval_batches=1", "data.sample_every=0")
    assert main(["train", *args]) == 0
    assert "bits_per_char" in capsys.readouterr().err


def test_stdlib_recipe_slice_trains(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "task": "charlm", "data": {"source": "stdlib", "max_files": 2, "batch_size": 4, "sample_every": 0},
        "model": {"hidden_size": 16, "num_layers": 1},
        "trainer": {"bptt": 16, "max_steps": 3, "eval_batches": 2},
        "run": {"dir": str(tmp_path / "run"), "device": "cpu"}}))
    assert main(["train", str(path)]) == 0
    assert "bits_per_char" in capsys.readouterr().err


def test_shipped_subword_recipe_trains_on_a_stdlib_slice(tmp_path, capsys):
    recipe_path = TESTS.parent / "configs" / "lm-stdlib-subword-60min.yaml"
    assert main(["train", str(recipe_path), "data.max_files=3", "data.vocab_size=400", "data.batch_size=2",
                 "data.sample_every=0", "model.hidden_size=16", "trainer.bptt=8", "trainer.max_steps=2",
                 "trainer.eval_batches=1", "trainer.precision=fp32", f"run.dir={tmp_path / 'run'}",
                 "run.device=cpu"]) == 0
    err = capsys.readouterr().err
    assert "bits_per_token" in err and "bits_per_char" in err
    assert '"kind": "subword"' in (tmp_path / "run" / "vocab.json").read_text()
