"""The worked task example in docs/training.md runs as printed: train, resume-free sample, eval."""
import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from toytask import one_thread_fixture  # noqa: E402

from rnnkit.cli import main  # noqa: E402
from rnnkit.tasks import unregister_task  # noqa: E402

DOC = Path(__file__).parent.parent / "docs" / "training.md"
_one_thread = one_thread_fixture()


@pytest.fixture
def tinylm(tmp_path, monkeypatch):
    text = DOC.read_text().split("### Worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    recipe = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    (tmp_path / "tinylm.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("tinylm")
    yield module, recipe
    unregister_task("tinylm")
    sys.modules.pop("tinylm", None)


def test_worked_example_trains_samples_and_evaluates(tinylm, tmp_path, capsys):
    _, recipe = tinylm
    run = tmp_path / "runs" / "tinylm"
    recipe["run"]["dir"] = str(run)
    path = tmp_path / "tinylm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--import", "tinylm", "trainer.max_steps=12", "trainer.eval_every=6"]) == 0
    valid = (run / "valid.csv").read_text()
    assert "bpc" in valid.splitlines()[0] and len(valid.splitlines()) == 3
    assert main(["sample", str(run), "--import", "tinylm", "--prime", "def ", "--length", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out.rstrip("\n")) >= 40
    assert main(["eval", str(run), "--import", "tinylm", "--json"]) == 0
    assert '"bpc"' in capsys.readouterr().out
