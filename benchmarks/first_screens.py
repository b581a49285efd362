"""The demo as a new user meets it: the build from an empty cache, then the first visit to every page.

    python benchmarks/first_screens.py                       # real SST-2 from ../shared/data/glue
    python benchmarks/first_screens.py --synthetic           # no data at all: the generated task

Starts `streamlit run app.py` on an empty cache folder, opens the app in headless Chromium and times the demo build
(fine-tuning and first screens, as the page runs it) until the model page shows the dense score. Then each page
is opened in a new browser session, on that server and on one started afresh per page, timing the page's first
figure and all the figures it draws unasked. Run it on an idle machine. Writes docs/first_screens[_synthetic].{md,json}
and a screenshot of each page to artifacts/screenshots/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from app_server import CHROMIUM, FLAGS, first_screen_checks, first_visit, start_app, stop_app
from common import REPO, markdown_table

from fwsvd_core.screens import DEFAULTS

SHOTS = REPO / "artifacts" / "screenshots"


def build_seconds(browser, url: str, metric: str, timeout_s: float) -> float:
    """Open the app on its default page and wait until the demo is built and scored."""
    page = browser.new_page()
    page.set_default_timeout(timeout_s * 1000)
    start = time.perf_counter()
    page.goto(url)
    page.get_by_text(f"Dense {metric}").wait_for()
    seconds = time.perf_counter() - start
    page.close()
    return seconds


def visit(browser, url: str, check, shot: Path | None = None) -> dict:
    seconds = first_visit(browser, url, check, timeout_s=600, shot=shot)
    return {**{k: round(v, 2) for k, v in seconds.items() if k != "errors"}, "figures": check.charts,
            "errors shown": int(seconds["errors"])}


def sweep_summary(cache: Path, glue: Path | None) -> list[dict]:
    """The stored default sweep: what the mismatch page shows first (dense, and each method at each ratio)."""
    os.environ["FWSVD_CACHE_DIR"] = str(cache)
    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.estimation.fisher import estimate_fisher
    from fwsvd_core.inputs.data import load_glue_folder
    from fwsvd_core.inputs.synthetic import synthetic_task_data
    from fwsvd_core.inputs.tasks import get_task
    from fwsvd_core.loading import load_model
    from fwsvd_core.screens import stored_sweep

    task = get_task("sst2")
    if glue is None:  # what the app loads for the generated task (studio.state.load_split)
        train, dev = synthetic_task_data("sst2", "train", 2000), synthetic_task_data("sst2", "dev", 500)
    else:
        train, dev = load_glue_folder(task, glue, "train"), load_glue_folder(task, glue, "dev")
    loaded = load_model("demo:sst2")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, train, DEFAULTS.fisher_samples,
                                       DEFAULTS.estimator, fingerprint=loaded.fingerprint))
    table = stored_sweep(session, dev, DEFAULTS.sweep_methods, DEFAULTS.sweep_ratios,
                         min(DEFAULTS.sweep_scored, len(dev)) or None)
    if table is None:
        return []
    columns = [c for c in ("method", "rank ratio", "param ratio (layers)", "accuracy", "ci low", "ci high")
               if c in table.columns]
    return table[columns].to_dict("records")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="no data folder: the app falls back to the generated task")
    parser.add_argument("--glue", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--cache", default="", help="cache folder to build into (default: a new temporary one)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    glue = None if args.synthetic else Path(args.glue)
    out = Path(args.out or REPO / "docs" / ("first_screens_synthetic" if args.synthetic else "first_screens"))
    cache = Path(args.cache or tempfile.mkdtemp(prefix="fwsvd-first-screens-"))
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        proc, url = start_app(cache, glue, "demo:sst2")
        try:
            build = build_seconds(browser, url, "accuracy", timeout_s=3600)
            print(f"demo build and first screens: {build:.0f} s", flush=True)
            for check in first_screen_checks():  # the server that built the demo, a new browser session per page
                shot = SHOTS / f"first-screens{'-synthetic' if args.synthetic else ''}-{check.path or 'model'}.png"
                rows.append({"page": check.title, "server": "the one that built the demo",
                             **visit(browser, url, check, shot)})
                print(rows[-1], flush=True)
        finally:
            stop_app(proc)
        for check in first_screen_checks():  # a server started afresh for each page: the first visit of all
            proc, url = start_app(cache, glue, "demo:sst2")
            try:
                rows.append({"page": check.title, "server": "started afresh", **visit(browser, url, check)})
            finally:
                stop_app(proc)
            print(rows[-1], flush=True)
        browser.close()
    sweep = sweep_summary(cache, glue)
    if not args.cache:
        shutil.rmtree(cache, ignore_errors=True)
    data = {"command": "python benchmarks/first_screens.py" + (" --synthetic" if args.synthetic else ""),
            "data": "generated task" if glue is None else str(glue), "cores": os.cpu_count(),
            "build s": round(build, 1), "pages": rows, "default sweep": sweep}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    text = [f"# First screens of the demo ({data['data']})", "",
            f"Made by `{data['command']}` on {data['cores']} CPU cores. A new user's first visit: the demo model is "
            f"built from an empty cache (fine-tuning, then what the first screens show) in **{build:.0f} s**, timed "
            "from opening the app to the dense score on its first page. Then each page is opened in a new browser "
            "session, first on the server that built the demo, then on a server started afresh for each page "
            "(nothing in memory: its first script run imports torch and transformers and loads the model): "
            "seconds from the request until the page's first figure, and until every figure it draws without a "
            "click.", "", markdown_table(rows), ""]
    if sweep:
        text += ["The mismatch sweep the page opens with (stored by the build):", "", markdown_table(sweep), ""]
    out.with_suffix(".md").write_text("\n".join(text))
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
