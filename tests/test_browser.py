"""End to end: the real app under `streamlit run`, driven in headless Chromium. Screenshots go to artifacts/."""
import contextlib
import time

import pytest
from conftest import REPO, make_tiny_model

from benchmarks.app_server import CHROMIUM, FLAGS, first_screen_checks, first_visit, start_app, stop_app

pytestmark = pytest.mark.browser

SHOTS = REPO / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_dir, glue_dir):
    root = tmp_path_factory.mktemp("browser")
    bert = make_tiny_model("bert", root / "tiny-bert", minilm_dir)
    distil = make_tiny_model("distilbert", root / "tiny-distilbert", minilm_dir)
    proc, url = start_app(str(root / "cache"), glue_dir, str(bert))
    yield url, distil
    stop_app(proc)


@contextlib.contextmanager
def browser_page(height: int, timeout_ms: int):
    """A page of headless Debian Chromium, 1400 pixels wide."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.set_default_timeout(timeout_ms)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def page(server):
    with browser_page(2400, 120_000) as page:
        yield page


def settle(page) -> None:
    """Wait until the script run is over (Streamlit keeps the old elements on screen while it reruns)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for()
    settle(page)


def frontier_star(page) -> list[float] | None:
    """The star of the budget frontier as drawn in the browser: [parameter ratio, predicted score]."""
    return page.evaluate("""() => {
        for (const g of document.querySelectorAll('.js-plotly-plot')) {
            const star = (g.data || []).find(t => t.name === 'current ranks (predicted)');
            if (star) return [star.x[0], star.y[0]];
        }
        return null;
    }""")


def frontier_trace(page, name: str) -> list[float] | None:
    """The first point of the budget frontier's trace `name` as drawn in the browser."""
    return page.evaluate("""(name) => {
        for (const g of document.querySelectorAll('.js-plotly-plot')) {
            const trace = (g.data || []).find(t => t.name === name);
            if (trace) return [trace.x[0], trace.y[0]];
        }
        return null;
    }""", name)


def edit_first_rank(page, value: str) -> None:
    """Type a rank into the first row of the rank table, as a user would: double-click the cell, type, Enter."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    grid = page.locator('[data-testid="stDataFrame"]').first
    editor = page.locator("input.gdg-input")  # the grid's cell editor
    for _ in range(10):  # a double-click while the page still lays itself out can miss the cell: try again
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.dblclick(box["x"] + box["width"] - 30, box["y"] + 35 + 17)  # the rank: last column, first row
        try:
            editor.wait_for(timeout=3000)
            break
        except PlaywrightTimeout:  # the editor did not open
            page.keyboard.press("Escape")
    editor.fill(value)
    editor.press("Enter")


def test_a_user_loads_a_model_visits_every_page_and_changes_a_rank(server, page):
    url, distil = server
    page.goto(url)
    page.get_by_text("Dense accuracy").wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    settle(page)
    shot(page, "1-model-and-task")
    # the app's own settings (.streamlit/config.toml): a local tool shows no Deploy button
    assert page.get_by_text("Deploy", exact=True).count() == 0

    # load another small model from a local directory, as a user would type it
    page.get_by_text("Local directory", exact=True).click()
    box = page.get_by_role("textbox", name="Directory")
    box.fill(str(distil))
    box.press("Enter")
    page.get_by_text(f"local directory {distil}").wait_for()
    settle(page)
    page.get_by_text("Dense accuracy").wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0

    open_page(page, "Fisher importance")
    page.locator('[data-testid="stPlotlyChart"]').nth(3).wait_for()
    shot(page, "2-fisher")

    open_page(page, "The SVD mismatch")
    page.get_by_role("button", name="Run the sweep").click()
    page.get_by_text("task score (accuracy on").first.wait_for()
    shot(page, "3-mismatch")

    open_page(page, "Rank editor")
    prediction = page.get_by_text("Predicted loss increase")
    prediction.wait_for()
    before = prediction.inner_text()
    page.get_by_role("button", name="Fill from parameter budget").click()  # new ranks, nothing evaluated
    for _ in range(300):  # the prediction follows the new ranks without any evaluation
        if prediction.inner_text() != before:
            break
        page.wait_for_timeout(100)
    assert prediction.inner_text() != before
    assert page.get_by_text("Measured accuracy").count() == 0
    page.get_by_role("button", name="Recompress and evaluate").click()
    page.get_by_text("Measured accuracy (run 1)").wait_for()
    page.get_by_text("Predicted before the run").wait_for()
    settle(page)
    # the run is a point of the frontier, measured at the current ranks: ringed, with no predicted star on it
    for _ in range(100):
        if frontier_star(page) is None:
            break
        page.wait_for_timeout(100)
    shot(page, "03-star-and-measured")
    assert frontier_star(page) is None, page.get_by_text("exact ranks").all_inner_texts()
    ring = frontier_trace(page, "current ranks (measured)")
    assert ring is not None
    edit_first_rank(page, "1")  # an edit reruns only the editor's fragment: the star must appear there
    for _ in range(300):
        if frontier_star(page) is not None:
            break
        page.wait_for_timeout(100)
    assert frontier_star(page)[0] < ring[0]  # fewer parameters kept
    shot(page, "4-rank-editor")
    assert page.locator('[data-testid="stException"]').count() == 0
    for name in ("1-model-and-task", "2-fisher", "3-mismatch", "4-rank-editor"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000


def first_rank_shown(page) -> str:
    """The first row's rank as the table shows it: the value its cell editor opens with."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    grid = page.locator('[data-testid="stDataFrame"]').first
    editor = page.locator("input.gdg-input")
    for _ in range(10):
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.dblclick(box["x"] + box["width"] - 30, box["y"] + 35 + 17)
        try:
            editor.wait_for(timeout=3000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    value = editor.input_value()
    editor.press("Escape")
    return value


def test_a_refused_rank_is_replaced_in_its_cell_by_the_rank_used(server, page):
    """Issue 23, 2: after a rank above the layer's maximum, the cell shows the rank that is used, not the typed one."""
    page.goto(server[0])
    page.get_by_text("Dense accuracy").wait_for()
    open_page(page, "Rank editor")
    page.get_by_text("Predicted loss increase").wait_for()
    settle(page)
    used = first_rank_shown(page)
    edit_first_rank(page, "500")
    page.get_by_text("The last valid rank is kept, and the table shows it").wait_for()
    settle(page)
    page.get_by_text("The last valid rank is kept").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "02-rank-cell-after-refusal.png"))
    assert first_rank_shown(page) == used != "500"


def test_the_first_screen_shows_the_apps_own_frame_at_once(page, tmp_path, glue_dir):
    """Issue 23, 17: on a fresh server the app's own navigation and title come before the libraries are loaded.
    Streamlit's lower-case list of the page files (its first run of a folder named pages/, before app.py's
    st.navigation replaces it) lasts no longer than starting the script, not the seconds the imports take."""
    proc, url = start_app(str(tmp_path / "cache"), glue_dir, "someone/not-a-model")  # no model: the frame alone
    try:
        page.goto(url)
        seen = []
        for _ in range(600):  # every 50 ms, from the first paint until the sidebar's summary is in
            nav = page.locator('[data-testid="stSidebarNav"]').all_inner_texts()
            sidebar = page.locator('[data-testid="stSidebar"]').all_inner_texts()
            seen.append((time.monotonic(), " ".join(nav), " ".join(sidebar)))
            if "Task" in seen[-1][2] and "Fisher" in seen[-1][2]:
                break
            if len(seen) == 10:
                page.screenshot(path=str(SHOTS / "17-first-screen.png"))
            page.wait_for_timeout(50)
        framed = [t for t, nav, side in seen if "Rank editor" in nav and "FWSVD Studio" in side]
        summary = next(t for t, _, side in seen if "Task" in side and "Fisher" in side)
        assert framed and framed[0] < summary  # the frame was up while the libraries loaded
        assert any("Loading the libraries" in side for _, _, side in seen)
        files_list = [t for t, nav, _ in seen if "rank editor" in nav or "model and task" in nav]
        assert not files_list or files_list[-1] - seen[0][0] < 2.0, "Streamlit's own page list stayed"
    finally:
        stop_app(proc)


def test_saving_into_a_folder_with_someone_elses_files_is_refused_in_the_browser(server, page, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("three years of work")
    page.goto(server[0])
    page.get_by_text("Dense accuracy").wait_for()
    open_page(page, "Rank editor")
    box = page.get_by_role("textbox", name="Save the compressed model to a folder")
    box.fill(str(mine))
    box.press("Enter")
    settle(page)
    page.get_by_role("button", name="Save compressed model").click()
    page.get_by_text("is not empty").wait_for()
    page.get_by_text("is not empty").scroll_into_view_if_needed()
    shot(page, "5-save-refused")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "three years of work"


def test_no_page_asks_anything_of_a_server_other_than_the_dashboard(server, page):
    from urllib.parse import urlparse

    requests: list[str] = []
    tab = page.context.browser.new_page(viewport={"width": 1400, "height": 2400})
    tab.set_default_timeout(120_000)
    tab.on("request", lambda request: requests.append(request.url))
    try:
        tab.goto(server[0])
        tab.get_by_text("Dense accuracy").wait_for()
        for title in ("Fisher importance", "The SVD mismatch", "Rank editor", "Model and task"):
            open_page(tab, title)
        tab.wait_for_timeout(1500)  # the favicon and the icons are set after the first render
    finally:
        tab.close()
    hosts = {urlparse(url).hostname for url in requests if not url.startswith(("data:", "blob:"))}
    assert requests and hosts <= {"127.0.0.1", "localhost"}, sorted(hosts)


def test_served_to_others_paths_outside_the_allowed_folders_are_refused_without_a_hint(page, tmp_path, glue_dir,
                                                                                     minilm_dir, monkeypatch):
    root, private = tmp_path / "allowed", tmp_path / "private"
    make_tiny_model("bert", root / "bert", minilm_dir)
    make_tiny_model("bert", private / "bert", minilm_dir)
    (private / "notes.txt").write_text("private")
    monkeypatch.setenv("FWSVD_SERVE", "1")
    monkeypatch.setenv("FWSVD_ALLOWED_DIRS", str(root))
    proc, url = start_app(str(tmp_path / "cache"), glue_dir, str(root / "bert"))
    tab = page.context.browser.new_page(viewport={"width": 1400, "height": 2400})
    tab.set_default_timeout(120_000)
    refusal = "This dashboard is served to others"
    try:
        shown = []
        for typed in (private / "bert", private / "notes.txt", private / "missing", root / ".." / "private" / "bert"):
            tab.goto(url)  # a new visitor each time
            tab.get_by_text("Dense accuracy").wait_for()
            settle(tab)
            tab.get_by_text("Local directory", exact=True).click()
            settle(tab)
            box = tab.get_by_role("textbox", name="Directory")
            box.fill(str(typed))
            box.press("Enter")
            alert = tab.locator('[data-testid="stAlertContentError"]', has_text=refusal).first
            alert.wait_for()
            settle(tab)
            shown.append(alert.inner_text())
            assert tab.get_by_text("Dense accuracy").count() == 0
        assert len(set(shown)) == 1 and "private" not in shown[0] and "config.json" not in shown[0]
        tab.goto(url)  # the allowed model
        tab.get_by_text("Dense accuracy").wait_for()
        settle(tab)
        open_page(tab, "Rank editor")
        save = tab.get_by_role("textbox", name="Save the compressed model to a folder")
        save.fill(str(private / "export"))
        save.press("Enter")
        settle(tab)
        tab.get_by_role("button", name="Save compressed model").click()
        tab.get_by_text(f"Could not save: {shown[0]}"[:60]).wait_for()
        shot(tab, "6-served-refused")
        assert sorted(p.name for p in private.iterdir()) == ["bert", "notes.txt"]
    finally:
        tab.close()
        stop_app(proc)


def test_the_demo_build_runs_on_when_its_tab_closes_and_a_new_tab_shows_it(page, tmp_path, glue_dir):
    cache = tmp_path / "cache"
    proc, url = start_app(str(cache), glue_dir, "demo:sst2")  # a first visit: the demo is not built yet
    try:
        browser = page.context.browser  # the fixture's page has a context of its own: a tab is a new page
        first = browser.new_page()
        first.goto(url)
        first.get_by_text("Building the demo model demo:sst2").first.wait_for()  # the title and the progress line
        first.get_by_text("elapsed").first.wait_for()
        first.close()  # the user closes the tab during the build
        time.sleep(3)
        second = browser.new_page()
        second.goto(url)
        second.get_by_text("Building the demo model demo:sst2").first.wait_for()
        progress = second.get_by_text("elapsed").first
        progress.wait_for()
        elapsed = int(progress.inner_text().split(" s elapsed")[0].split()[-1])
        assert elapsed >= 3  # the same build, still running, not one started by this tab
        second.get_by_role("button", name="Cancel").click()
        second.get_by_text("Building the demo was cancelled").wait_for()
        second.close()
        assert not list((cache / "demos").glob("demo-sst2*/model.safetensors"))  # nothing half-built kept
    finally:
        stop_app(proc)


def short_glue(glue_dir, folder):
    """SST-2 cut to its first 300 training and 200 dev sentences: a demo built on it takes seconds."""
    (folder / "SST-2").mkdir(parents=True)
    for split, rows in (("train", 300), ("dev", 200)):
        lines = (glue_dir / "SST-2" / f"{split}.tsv").read_text().splitlines(keepends=True)
        (folder / "SST-2" / f"{split}.tsv").write_text("".join(lines[: rows + 1]))
    return folder


@pytest.fixture(scope="module")
def built_demo(tmp_path_factory, glue_dir):
    """demo:sst2 built as the app builds it, first screens included, on a GLUE folder cut short (a quick build)."""
    import os

    from fwsvd_core.inputs.data import load_glue_folder
    from fwsvd_core.inputs.tasks import get_task
    from fwsvd_core.screens import build_demo_and_screens

    root = tmp_path_factory.mktemp("demo")
    short = short_glue(glue_dir, root / "glue")
    cache = root / "cache"
    before = os.environ.get("FWSVD_CACHE_DIR")
    os.environ["FWSVD_CACHE_DIR"] = str(cache)
    try:
        task = get_task("sst2")
        build_demo_and_screens("demo:sst2", load_glue_folder(task, short, "train"), load_glue_folder(task, short, "dev"),
                               short)
    finally:
        if before is None:
            os.environ.pop("FWSVD_CACHE_DIR")
        else:
            os.environ["FWSVD_CACHE_DIR"] = before
    return cache, short


def test_after_the_demo_build_every_page_shows_its_figures_unasked_from_what_the_build_stored(built_demo, page):
    cache, glue = built_demo
    browser = page.context.browser
    stored = {p for p in cache.rglob("*") if p.is_file()}
    proc, url = start_app(cache, glue, "demo:sst2")
    try:
        # the server's first script run imports torch and transformers (seconds on 2 cores), as after the build
        first_visit(browser, url, first_screen_checks()[0], timeout_s=120)
        for i, check in enumerate(first_screen_checks()):  # each page in a new browser session: its first visit
            shot = SHOTS / f"demo-{i + 1}-{check.path or 'model'}.png"
            seconds = first_visit(browser, url, check, timeout_s=60, shot=shot)  # every figure, without a click
            assert seconds["errors"] == 0, check.title
        # nothing was computed on the visits: every figure came from what the build stored (how fast they arrive
        # is measured by benchmarks/first_screens.py, docs/first_screens.md)
        assert {p for p in cache.rglob("*") if p.is_file()} == stored
    finally:
        stop_app(proc)


@pytest.mark.slow
def test_the_first_screens_benchmark_builds_through_the_app_and_reports_every_page(tmp_path, glue_dir):
    import json
    import subprocess
    import sys

    out = tmp_path / "first"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "first_screens.py"), "--glue",
                    str(short_glue(glue_dir, tmp_path / "glue")), "--cache", str(tmp_path / "cache"), "--out", str(out)],
                   check=True, timeout=900, cwd=REPO)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["build s"] > 0 and [r["page"] for r in report["pages"]] == [c.title for c in first_screen_checks()] * 2
    assert all(r["errors shown"] == 0 and 0 < r["first figure s"] <= r["all figures s"] for r in report["pages"])
    methods = {r["method"] for r in report["default sweep"]}
    assert methods == {"dense", "svd", "fwsvd-input", "fwsvd-output"}  # the sweep the build stored
    assert "| Rank editor |" in out.with_suffix(".md").read_text()
