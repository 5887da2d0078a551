"""The neuron page in a real browser (Debian's Chromium through Playwright): it renders,
its colours and top-5 guesses are the model's, its pages switch, it loads nothing else,
and a screenshot is taken."""
import re
from pathlib import Path

import pytest
import torch

from rnnkit.data.vocab import CharVocab
from rnnkit.inspect.neurons import Unit, colour, neuron_page, read_text, screenshot, value_range
from rnnkit.models import LanguageModel

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXT = 'def f(x):\n    return "a (b)" + x  # c\n\nclass A:\n    pass\n' * 2

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                               "(apt-get install chromium)")


@pytest.fixture
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _rgb(text):
    return tuple(int(v) for v in re.findall(r"\d+", text)[:3])


def test_page_renders_the_models_values(browser, tmp_path):
    torch.manual_seed(0)
    vocab = CharVocab.build([TEXT])
    model = LanguageModel(len(vocab), "lstm", hidden_size=8, num_layers=2)
    activity = read_text(model, vocab, TEXT)
    units = [Unit(1, 3, "h"), Unit(0, 5, "c"), Unit(1, 2, "f")]
    page = tmp_path / "page.html"
    page.write_text(neuron_page(activity, units, title="test page", page_size=40), encoding="utf-8")

    # the model itself, unrecorded (torch's fused LSTM), is the oracle
    with torch.no_grad():
        ids = torch.as_tensor(vocab.encode(TEXT))[None]
        logits, _ = model(ids)
        probs = logits[0].softmax(-1)  # (T, V)
        hidden, _ = model.rnn(model.embedding(ids))  # (1, T, H) top layer

    requests = []
    tab = browser.new_page(viewport={"width": 1000, "height": 800})
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(page.as_uri())
    assert tab.title() == "test page"
    visible = tab.eval_on_selector_all(".tok", "els => els.filter(e => e.offsetParent !== null)"
                                               ".map(e => +e.dataset.t)")
    assert visible == list(range(40))  # the first page only
    for t in (0, 6, 17, 39):
        cells = tab.eval_on_selector_all(
            f'.tok[data-t="{t}"] .v',
            "els => els.map(e => [e.dataset.value, getComputedStyle(e).backgroundColor, e.textContent])")
        assert len(cells) == 3
        for unit, (value, background, shown) in zip(units, cells):
            recorded = activity.values(unit)[t]
            assert float(value) == pytest.approx(float(recorded), rel=1e-5, abs=1e-6)
            assert _rgb(background) == colour(recorded, *value_range(unit.kind, activity.values(unit)))
            assert shown == {"\n": "↵", " ": "␣"}.get(TEXT[t], TEXT[t])
        assert float(cells[0][0]) == pytest.approx(float(hidden[0, t, 3]), abs=1e-5)
        guesses = tab.eval_on_selector_all(f'.tok[data-t="{t}"] .g',
                                           "els => els.map(e => [e.firstChild.textContent, +e.dataset.p])")
        best = probs[t].topk(5)
        expected = [vocab.token(int(i)) for i in best.indices]
        assert [g[0] for g in guesses] == [{"\n": "↵", " ": "␣"}.get(c, c) for c in expected]
        assert [g[1] for g in guesses] == pytest.approx(best.values.tolist(), abs=1e-5)
    shot = tmp_path / "page.png"
    tab.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000

    tab.goto(page.as_uri() + "#page-3")  # pagination: anchors, no script
    visible = tab.eval_on_selector_all(".tok", "els => els.filter(e => e.offsetParent !== null)"
                                               ".map(e => +e.dataset.t)")
    assert visible == list(range(80, len(TEXT)))
    assert all(url.startswith("file://") for url in requests), requests
    assert "<script" not in page.read_text() and "http" not in page.read_text()
    tab.close()


def test_screenshot_writes_a_small_png_of_the_page(tmp_path):
    """What `rnnkit neurons --screenshot` writes (its own browser, so no `browser` fixture here)."""
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    torch.manual_seed(0)
    vocab = CharVocab.build([TEXT])
    activity = read_text(LanguageModel(len(vocab), "gru", hidden_size=4), vocab, TEXT[:30])
    page = tmp_path / "page.html"
    page.write_text(neuron_page(activity, [Unit(0, 1, "z")], title="shot"), encoding="utf-8")
    small = tmp_path / "small.png"
    screenshot(page, small, width=640, height=480)
    head = small.read_bytes()
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 640 and int.from_bytes(head[20:24], "big") == 480
