"""The real app under `streamlit run`, and first visits to its pages in headless Chromium: for the browser tests and
the first-screens benchmark."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@dataclass(frozen=True)
class PageCheck:
    """A page of the app, and what shows that its first figures are there."""

    title: str
    path: str  # the page's address under the app's
    ready: str  # a CSS selector or text= locator that appears when the page's first figure is drawn
    charts: int  # how many plotly charts the page draws without any click


def first_screen_checks(metric: str = "accuracy") -> list[PageCheck]:
    return [
        PageCheck("Model and task", "", f"text=Dense {metric}", 0),
        PageCheck("Fisher importance", "fisher", '[data-testid="stPlotlyChart"]', 4),
        PageCheck("The SVD mismatch", "mismatch", "text=Left: task score (higher is better)", 5),
        PageCheck("Rank editor", "rank_editor", "text=Predicted loss increase", 2),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(cache: str | Path, glue_dir: str | Path | None, default_model: str) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port, as users run it; returns the process and its address once it answers."""
    port = free_port()
    env = {**os.environ, "FWSVD_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "FWSVD_DEFAULT_MODEL": default_model}
    env.pop("FWSVD_JOB_SETTLE", None)
    env.pop("FWSVD_DATA_DIR", None)
    if glue_dir is not None:
        env["FWSVD_DATA_DIR"] = str(glue_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start: " + proc.stdout.read().decode()[-2000:])  # type: ignore[union-attr]


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def first_visit(browser, url: str, check: PageCheck, timeout_s: float = 300,
                shot: Path | None = None) -> dict[str, float]:
    """Open the page in a new browser session (a first visit) and time, from the request, its first figure and all
    the charts it draws unasked (then save a full-page screenshot to `shot`). Returns seconds."""
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    try:
        start = time.perf_counter()
        page.goto(f"{url}/{check.path}")
        page.locator(check.ready).first.wait_for()
        first = time.perf_counter() - start
        charts = page.locator('[data-testid="stPlotlyChart"]')
        if check.charts:
            charts.nth(check.charts - 1).wait_for()
        seconds = {"first figure s": first, "all figures s": time.perf_counter() - start,
                   "errors": float(page.locator('[data-testid="stException"]').count())}
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(800)  # plotly's transitions
            page.screenshot(path=str(shot), full_page=True)
        return seconds
    finally:
        context.close()
