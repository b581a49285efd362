"""End to end for the causal language model demo: the real app under `streamlit run` in headless Chromium, the
demo (MiniLM run as a decoder, fine-tuned briefly on the GLUE sentences) continued by its dense and its compressed
self, perplexity (lower is better) on the score and on every figure that draws one. Screenshots go to artifacts/."""
import os

import pytest
from conftest import make_tiny_model
from test_browser import SHOTS, browser_page, open_page, settle

from benchmarks.app_server import start_app, stop_app

pytestmark = pytest.mark.browser
LOWER = "perplexity (lower is better)"


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_dir, glue_dir):
    """The app opening on a tiny BERT, with the language-model demo built beforehand (a short fine-tuning, in the
    server's own cache folder: the page finds it built)."""
    from fwsvd_core.demo import ensure_demo

    root = tmp_path_factory.mktemp("browser-lm")
    bert = make_tiny_model("bert", root / "tiny-bert", minilm_dir)
    cache = root / "cache"
    before = os.environ.get("FWSVD_CACHE_DIR")
    os.environ["FWSVD_CACHE_DIR"] = str(cache)
    try:
        ensure_demo("demo:lm", data_dir=glue_dir, train_examples=48, epochs=1)
    finally:
        if before is None:
            os.environ.pop("FWSVD_CACHE_DIR")
        else:
            os.environ["FWSVD_CACHE_DIR"] = before
    proc, url = start_app(str(cache), glue_dir, str(bert))
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def page(server):
    with browser_page(1000, 240_000) as page:
        yield page


def shot(page, name: str, at: str | None = None) -> None:
    """The window as the user sees it, scrolled to the heading `at` when given."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    if at is not None:
        page.get_by_role("heading", name=at).first.scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def score_axes(page) -> list[str]:
    """The y-axis titles of every figure drawn on the page."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
        g => ((g.layout || {}).yaxis || {}).title).map(t => (t && t.text) || t || '')""")


def test_the_language_model_demo_continues_a_prompt_dense_and_compressed_scored_by_perplexity(server, page):
    page.goto(server)
    page.get_by_text("Dense accuracy").wait_for()
    settle(page)
    # fewer Fisher windows than the first screens' default: the page computes only what it shows
    page.get_by_role("slider").first.focus()
    page.keyboard.press("Home")  # the fewest: 8
    settle(page)
    page.get_by_text("8 examples", exact=True).wait_for()
    page.get_by_text("Built-in demo", exact=True).click()
    settle(page)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Demo").first.click()
    page.get_by_role("option", name="demo:lm (wikitext2)").click()
    page.get_by_text(f"Dense {LOWER}").wait_for()
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Tokens per window (L)").count() == 1
    page.get_by_text("8 windows", exact=True).wait_for()  # the Fisher's examples are windows of text
    shot(page, "24-5-lm-model-and-task", at="Fisher settings")

    open_page(page, "Rank editor")
    page.get_by_text(f"Predicted {LOWER}").wait_for()
    page.get_by_role("button", name="Continue the prompt with both models").click()
    page.get_by_text("Dense model", exact=True).wait_for()
    settle(page)
    shot(page, "24-5-lm-continuations", at="What compression does to the text")
    texts = page.locator('[data-testid="stText"]').all_inner_texts()
    dense, compressed = texts[-2:]
    assert dense.startswith("The film is a … ") and compressed.startswith("The film is a … ")
    assert dense.split("… ", 1)[1].strip() and compressed.split("… ", 1)[1].strip()
    page.get_by_role("button", name="Recompress and evaluate").click()
    page.get_by_text(f"Measured {LOWER} (run 1)").wait_for()
    settle(page)
    axes = [a for a in score_axes(page) if "perplexity" in a]
    assert axes and all(LOWER in a for a in axes), score_axes(page)
    shot(page, "24-5-lm-frontier", at="Budget frontier")
