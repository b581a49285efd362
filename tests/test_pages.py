"""Every page driven through Streamlit's AppTest, on a tiny model and the local GLUE data."""
import json
import threading

import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest

from fwsvd_core.inputs.batching import check_cancel
from studio.state import Choice, upload_digest


def make_app(model: str, glue_dir, upload: tuple[str, bytes] | None = None, **overrides) -> AppTest:
    """The app on a choice; `upload` (name, bytes) is a file this browser session uploaded."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
    settings = dict(model=model, task="sst2", data_source="Local GLUE folder", data_dir=str(glue_dir),
                    fisher_samples=32, eval_subsample=100)
    if upload is not None:
        settings.update(data_source="Uploaded file", upload_digest=upload_digest(upload[1]))
        at.session_state["uploads"] = {upload_digest(upload[1]): upload}
    at.session_state["choice"] = Choice(**{**settings, **overrides})
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def values(array) -> list:
    """A figure's array as numbers: plotly writes numeric arrays as base64 (`bdata`) in its JSON."""
    import base64

    import numpy as np

    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture
def app(tiny_models, glue_dir):
    return make_app(str(tiny_models["bert"]), glue_dir).run()


def test_model_page_shows_source_layers_dense_score_and_fisher(app):
    no_failure(app)
    metrics = {m.label: m.value for m in app.metric}
    assert float(metrics["Dense accuracy"]) == pytest.approx(float(metrics["Dense accuracy"]))
    assert metrics["Compressible layers"] == "12" and metrics["Fisher (per-sample)"] == "32 examples"
    layers = app.dataframe[0].value
    assert list(layers.columns[:4]) == ["layer", "block", "role", "out"] and len(layers) == 12
    assert any("local directory" in m.value for m in app.markdown)
    assert any("GLUE folder" in m.value for m in app.markdown)


def test_unknown_model_gives_a_message_not_a_traceback(tiny_models, glue_dir):
    at = make_app("someone/not-a-model", glue_dir).run()
    assert not at.exception
    assert any("not in the local cache" in e.value and "demo:sst2" in e.value for e in at.error)


def test_a_file_without_the_columns_is_refused_clearly(tiny_models, glue_dir):
    at = make_app(str(tiny_models["bert"]), glue_dir, upload=("mine.csv", b"text,score\nhello,1\nbye,0\n"),
                  text_columns=("sentence",), label_column="label").run()
    assert not at.exception
    assert any("missing column" in e.value for e in at.error)


def test_an_uploaded_file_is_split_and_scored(tiny_models, glue_dir):
    content = b"t,y\n" + b"".join(f"sentence {i},{i % 2}\n".encode() for i in range(40))
    at = make_app(str(tiny_models["bert"]), glue_dir, upload=("mine.csv", content),
                  text_columns=("t",), label_column="y").run()
    no_failure(at)
    assert any(m.label == "Dense accuracy" for m in at.metric)


def test_fisher_page_shows_overview_heatmaps_and_profiles(app):
    app.switch_page("pages/fisher.py").run()
    no_failure(app)
    figs = figures(app)
    assert len(figs) == 4
    overview = figs[0]["data"][0]
    assert overview["type"] == "heatmap" and len(overview["y"]) == 6 and len(overview["x"]) == 2  # roles x blocks
    assert figs[1]["data"][0]["type"] == "heatmap" and "Fisher" in figs[1]["layout"]["title"]["text"]
    assert "|W|" in figs[2]["layout"]["title"]["text"]
    assert len(figs[3]["data"]) == 2  # input side and output side
    sides = next(c.value for c in app.caption if c.value.startswith("The sums FWSVD weights with"))
    assert "Input side: per input feature" in sides and "Output side: per output feature" in sides
    assert "weights a row" not in sides
    chosen = app.selectbox[0].value
    app.selectbox[0].set_value(next(o for o in app.selectbox[0].options if o != chosen).split("  (")[0]).run()
    no_failure(app)


def test_fisher_page_with_the_low_memory_fisher_says_it_shows_profiles_only(tiny_models, glue_dir,
                                                                            full_fisher_does_not_fit):
    at = make_app(str(tiny_models["bert"]), glue_dir).run()
    no_failure(at)
    at.switch_page("pages/fisher.py").run()
    no_failure(at)
    assert any("profiles only, no heatmap" in i.value for i in at.info)
    figs = figures(at)
    assert len(figs) == 2 and len(figs[1]["data"]) == 2  # the overview and the two profiles, no heatmaps


def test_mismatch_page_sweeps_spectra_and_ablation(app):
    app.switch_page("pages/mismatch.py").run()
    no_failure(app)
    assert len(figures(app)) == 3  # the toy, the spectra and the predictor; the sweep waits for its button
    app.button[0].click().run()
    no_failure(app)
    table = app.dataframe[0].value
    assert list(table["method"]).count("dense") == 1 and len(table) == 1 + 3 * 4
    mismatch = figures(app)[1]
    assert {t["name"] for t in mismatch["data"]} == {"svd", "fwsvd-input", "fwsvd-output"}
    # issue 23, 10 and 11: intervals on the scores, the examples named, the dense line on the same examples
    scored = [t for t in mismatch["data"] if t.get("xaxis", "x") == "x"]
    assert scored and all(t["error_y"]["arrayminus"] for t in scored)
    assert any(a["text"] == "dense on 400 examples" for a in mismatch["layout"]["annotations"])
    assert any("95% bootstrap intervals over the 400 examples" in c.value for c in app.caption)
    next(b for b in app.button if b.label.startswith("Run the ablation")).click().run()
    no_failure(app)
    ablation = app.dataframe[1].value
    assert list(ablation["group"]) == list(range(1, 11))
    bars = next(f for f in figures(app) if "singular values is removed" in f["layout"].get("title", {}).get("text", ""))
    assert bars["data"][0]["error_y"]["array"] and "300 examples" in bars["layout"]["title"]["text"]
    assert any(c.value.startswith("Bars: paired 95% bootstrap intervals") for c in app.caption)


def test_rank_editor_fills_recompresses_scores_and_exports(app):
    app.switch_page("pages/rank_editor.py").run()
    no_failure(app)
    before = {m.label: m.value for m in app.metric}
    app.slider[1].set_value(0.3).run()
    next(b for b in app.button if b.label == "Fill from parameter budget").click().run()
    no_failure(app)
    after = {m.label: m.value for m in app.metric}
    assert float(after["Param ratio (layers)"]) <= 0.3
    assert after != before
    recompress = lambda: next(b for b in app.button if b.label == "Recompress and evaluate").click().run()  # noqa: E731
    recompress()
    app.slider[0].set_value(0.1).run()
    next(b for b in app.button if b.label == "Fill from rank ratio").click().run()
    recompress()
    no_failure(app)
    history = app.session_state["history"]
    assert [h["run"] for h in history] == [1, 2] and history[1]["mean rank ratio"] < history[0]["mean rank ratio"]
    assert history[0]["recompress ms"] < 5000
    assert any(m.label.startswith("Measured accuracy (run 2)") for m in app.metric)
    labels = [d.label for d in app.get("download_button")]
    assert {"Rank table (CSV)", "Rank table (JSON)", "Run history (CSV)", "Session summary (HTML)"} <= set(labels)


def test_ranks_out_of_range_give_a_message(app):
    app.switch_page("pages/rank_editor.py").run()
    ranks = dict(app.session_state["ranks"])
    ranks[next(iter(ranks))] = 10_000
    app.session_state["ranks"] = ranks
    app.run()
    assert not app.exception
    assert any("must be between 1 and 32" in e.value for e in app.error)


def test_save_compressed_model_from_the_editor(app, tmp_path):
    from fwsvd_core.loading import load_model

    app.switch_page("pages/rank_editor.py").run()
    app.text_input[0].set_value(str(tmp_path / "out")).run()
    next(b for b in app.button if b.label == "Save compressed model").click().run()
    no_failure(app)
    assert any("Saved to" in s.value for s in app.success)
    back = load_model(tmp_path / "out", device="cpu")
    assert back.model.config.fwsvd_compression["method"] == "fwsvd-output"


def test_the_editors_export_card_has_the_fisher_the_measured_scores_and_how_to_reproduce_it(app, tmp_path):
    """Issue 23, 1 and 9: the dashboard's export carries what the command line's does, and its refusal of an
    earlier export names the dashboard's own control."""
    import shlex

    from fwsvd_core.cli import build_parser

    app.switch_page("pages/rank_editor.py").run()
    next(b for b in app.button if b.label == "Recompress and evaluate").click().run()
    measured = app.session_state["history"][-1]["accuracy"]
    app.text_input[0].set_value(str(tmp_path / "out")).run()
    next(b for b in app.button if b.label == "Save compressed model").click().run()
    no_failure(app)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Fisher: per-sample estimator, 32 examples" in card and "- Calibration data: 32 examples, drawn from" in card
    assert "not used by this method" not in card
    scores = card.split("## Scores measured")[1].split("##")[0]
    assert f"| fwsvd-output | {measured:.4f} |" in scores and "| dense |" in scores and "100 examples" in scores
    command = card.split("## Reproducing it")[1].split("```")[1].strip()
    assert "--method fwsvd-output" in command and "--ranks THIS_FOLDER" in command
    assert "--fisher-samples 32" in command and "--eval-subsample 100" in command
    args = build_parser().parse_args(shlex.split(command)[3:])  # a command line the CLI accepts as it stands
    assert args.command == "compress" and args.ranks == "THIS_FOLDER" and args.evaluate
    # saving again over it: the dashboard's own words, not the command line's option
    next(b for b in app.button if b.label == "Save compressed model").click().run()
    refusal = " ".join(e.value for e in app.error)
    assert "tick 'Replace an earlier export'" in refusal and "--overwrite" not in refusal


def test_the_card_of_an_export_never_measured_in_the_editor_is_scored_at_its_ranks(app, tmp_path):
    app.switch_page("pages/rank_editor.py").run()
    app.text_input[0].set_value(str(tmp_path / "out")).run()
    next(b for b in app.button if b.label == "Save compressed model").click().run()
    no_failure(app)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Scores measured" in card and "| fwsvd-output |" in card and "## Reproducing it" in card


def test_two_sessions_keep_their_own_ranks(tiny_models, glue_dir):
    from fwsvd_core.inputs.models import model_fingerprint
    from studio.state import cached_model

    first, second = make_app(str(tiny_models["bert"]), glue_dir), make_app(str(tiny_models["bert"]), glue_dir)
    for at, ratio in ((first, 0.1), (second, 0.5)):
        at.run().switch_page("pages/rank_editor.py").run()
        at.slider[0].set_value(ratio).run()
        next(b for b in at.button if b.label == "Fill from rank ratio").click().run()
        next(b for b in at.button if b.label == "Recompress and evaluate").click().run()
    name = next(iter(first.session_state["ranks"]))
    assert first.session_state["ranks"][name] == 3 and second.session_state["ranks"][name] == 16
    assert len(first.session_state["history"]) == len(second.session_state["history"]) == 1
    loaded = cached_model(str(tiny_models["bert"]))
    assert model_fingerprint(loaded.model, loaded.tokenizer) == loaded.fingerprint  # the shared model was never modified


def blocking_fisher(monkeypatch, gate: threading.Event, calls: list):
    """The page's Fisher waits at `gate` (checking for a cancel) before it is estimated for real."""
    import studio.state

    real = studio.state.estimate_fisher

    def fisher(*args, progress=None, cancel=None, **kwargs):
        calls.append(1)
        while not gate.wait(0.02):
            check_cancel(cancel)
            if progress is not None:
                progress(1, 4)
        return real(*args, progress=progress, cancel=cancel, **kwargs)

    monkeypatch.setattr(studio.state, "estimate_fisher", fisher)
    monkeypatch.setenv("FWSVD_JOB_SETTLE", "0.2")


def fisher_job():
    """The one Fisher job of the registry."""
    from studio.state import background_jobs

    jobs = [j for j in background_jobs().running() if "Fisher" in j.label]
    assert len(jobs) == 1, [j.label for j in jobs]
    return jobs[0]


@pytest.mark.slow
def test_the_fisher_runs_in_the_background_two_tabs_share_it_and_only_the_last_one_needing_it_cancels_it(
        tiny_models, glue_dir, monkeypatch):
    gate, calls = threading.Event(), []
    blocking_fisher(monkeypatch, gate, calls)
    tab = make_app(str(tiny_models["bert"]), glue_dir, fisher_samples=64).run()
    no_failure(tab)
    assert any("Estimating the Fisher" in m.value for m in tab.markdown)
    assert not any(m.label == "Dense accuracy" for m in tab.metric)  # the page shows the job and nothing that waits
    lines = [p.proto.text for p in tab.get("progress")]
    assert lines and all("elapsed" in t and "Estimating the Fisher" not in t for t in lines)  # no repeated title
    other = make_app(str(tiny_models["bert"]), glue_dir, fisher_samples=64).run()  # another visitor, the same job
    assert any("Estimating the Fisher" in m.value for m in other.markdown) and len(calls) == 1
    job = fisher_job()
    assert len(job.needed_by) == 2
    next(b for b in tab.button if b.label == "Cancel").click().run()  # the first visitor cancels...
    assert any("was cancelled" in w.value for w in tab.warning)
    assert not any(m.label == "Dense accuracy" for m in tab.metric)
    assert job.status == "running" and not job.cancel_requested()  # ...for herself: the other still needs it
    other.run()
    assert any("Estimating the Fisher" in m.value for m in other.markdown) and not other.warning
    next(b for b in other.button if b.label == "Cancel").click().run()  # the last one needing it: really cancelled
    assert job.wait(10) and job.status == "cancelled"
    assert any("was cancelled" in w.value for w in other.warning)
    gate.set()
    next(b for b in tab.button if b.label.startswith("Start estimating the fisher again")).click().run()
    for _ in range(100):
        tab.run()
        if any(m.label == "Dense accuracy" for m in tab.metric):
            break
    no_failure(tab)
    assert any(m.label == "Dense accuracy" for m in tab.metric) and len(calls) == 2


def test_a_fisher_superseded_by_new_settings_is_cancelled_and_freed(tiny_models, glue_dir, monkeypatch):
    from studio.state import background_jobs

    gate, calls = threading.Event(), []
    blocking_fisher(monkeypatch, gate, calls)
    tab = make_app(str(tiny_models["bert"]), glue_dir, fisher_samples=64).run()
    first = fisher_job()
    samples = next(s for s in tab.select_slider if s.label.startswith("Training examples for the Fisher"))
    samples.set_value(128).run()  # the slider moved while the first Fisher runs
    assert first.wait(10) and first.status == "cancelled" and background_jobs().get(first.key) is None
    second = fisher_job()
    assert second is not first and "128" in second.label
    gate.set()
    for _ in range(100):
        tab.run()
        if any(m.label == "Dense accuracy" for m in tab.metric):
            break
    no_failure(tab)
    assert any(m.label == "Dense accuracy" for m in tab.metric) and len(calls) == 2


def test_rank_editor_allocators_and_activation_methods(app):
    app.switch_page("pages/rank_editor.py").run()
    app.selectbox[0].set_value("svd-llm").run()
    no_failure(app)
    app.radio[-1].set_value("spectral").run()
    app.slider[1].set_value(0.3).run()
    next(b for b in app.button if b.label == "Fill from parameter budget").click().run()
    no_failure(app)
    ranks = app.session_state["ranks"]
    assert len(set(ranks.values())) > 1  # the spectral allocator does not give every layer the same rank
    assert float({m.label: m.value for m in app.metric}["Param ratio (layers)"]) <= 0.3
    next(b for b in app.button if b.label == "Recompress and evaluate").click().run()
    no_failure(app)
    assert app.session_state["history"][0]["method"] == "svd-llm"


def test_mismatch_page_shows_the_predictor_and_validates_it(app):
    app.switch_page("pages/mismatch.py").run()
    no_failure(app)
    predictor = figures(app)[-1]
    assert "Predicted loss saved" in predictor["layout"]["title"]["text"] and "(diagonal;" in predictor["layout"]["title"]["text"]
    app.radio(key="predictor_kind").set_value("full").run()
    no_failure(app)
    assert "(full;" in figures(app)[-1]["layout"]["title"]["text"]
    # issue 23, 7: the predictors offered are the ones the text explains and the button validates
    offered = app.radio(key="predictor_kind").options
    assert offered == ["diagonal", "full"]  # kfac and nearest wait for the Kronecker factors
    explained = next(m.value for m in app.markdown if "Where does weighting matter" in m.value or "**diagonal**" in m.value)
    assert all(f"**{name}**" in explained for name in ("diagonal", "full", "kfac", "nearest"))
    validate = next(b for b in app.button if b.label.startswith("Validate the"))
    assert validate.label.startswith("Validate the 2 predictors (diagonal, full)")
    validate.click().run()
    no_failure(app)
    text = next(m.value for m in app.markdown if "Spearman rank correlation" in m.value)
    assert "**diagonal**" in text and "**full**" in text and "split-half reliability" in text


def test_a_model_loaded_in_bfloat16_is_scored_and_recompressed_in_bfloat16(tiny_models, glue_dir):
    at = make_app(str(tiny_models["bert"]), glue_dir).run()
    next(s for s in at.selectbox if s.label == "Weights' dtype").set_value("bfloat16").run()
    no_failure(at)
    assert at.session_state["choice"].dtype == "bfloat16"
    assert any("weights in bfloat16" in m.value for m in at.markdown)
    at.switch_page("pages/rank_editor.py").run()
    next(b for b in at.button if b.label == "Recompress and evaluate").click().run()
    no_failure(at)  # float32 factors in a bfloat16 model failed here ("expected m1 and m2 to have the same dtype")
    assert len(at.session_state["history"]) == 1 and any(m.label.startswith("Measured accuracy") for m in at.metric)


@pytest.mark.slow
def test_mismatch_page_adds_the_kronecker_spectra_on_request(app):
    app.switch_page("pages/mismatch.py").run()
    spectra = next(f for f in figures(app) if "Singular value spectra" in f["layout"].get("title", {}).get("text", ""))
    assert {t["name"] for t in spectra["data"]} == {"svd", "fwsvd-input", "fwsvd-output", "fwsvd-both"}
    next(b for b in app.button if b.label.startswith("Add the Kronecker-factored spectra")).click().run()
    no_failure(app)
    spectra = next(f for f in figures(app) if "Singular value spectra" in f["layout"].get("title", {}).get("text", ""))
    assert {"kfac", "gfwsvd"} <= {t["name"] for t in spectra["data"]}
    assert any("L_B^T W L_A" in m.value and "Cholesky" in m.value for m in app.markdown)
    assert not [b for b in app.button if b.label.startswith("Add the Kronecker-factored spectra")]
    assert app.radio(key="predictor_kind").options == ["diagonal", "full", "kfac", "nearest"]
    app.radio(key="predictor_kind").set_value("kfac").run()
    no_failure(app)
    assert "(kfac;" in figures(app)[-1]["layout"]["title"]["text"]


def test_rank_editor_compresses_with_gfwsvd(app):
    app.switch_page("pages/rank_editor.py").run()
    app.selectbox[0].set_value("gfwsvd").run()
    no_failure(app)
    next(b for b in app.button if b.label == "Recompress and evaluate").click().run()
    no_failure(app)
    assert any("gfwsvd" in str(df.value.to_dict()) for df in app.dataframe)


def test_rank_editor_predicts_the_score_before_evaluating_and_keeps_both_in_the_history(app):
    app.switch_page("pages/rank_editor.py").run()
    no_failure(app)

    def predicted() -> float:
        return float(next(m for m in app.metric if m.label == "Predicted accuracy").value)

    def predicted_loss() -> float:
        caption = next(c.value for c in app.caption if c.value.startswith("Predicted loss increase"))
        return float(caption.split()[3])

    before, loss_before = predicted(), predicted_loss()
    assert any("uncalibrated until the first run" in c.value for c in app.caption)
    app.slider[0].set_value(0.05).run()
    next(b for b in app.button if b.label == "Fill from rank ratio").click().run()
    assert predicted_loss() > loss_before > 0  # fewer ranks: a larger predicted loss ...
    assert predicted() <= before  # ... and no better predicted score
    next(b for b in app.button if b.label == "Recompress and evaluate").click().run()
    no_failure(app)
    history = app.dataframe[-1].value
    assert {"accuracy", "predicted accuracy", "predicted loss increase"} <= set(history.columns)
    assert any(m.label == "Predicted before the run" for m in app.metric)
    # at the run's own ranks the measurement is shown, not a prediction (issue 23, 3) ...
    shown = next(m for m in app.metric if m.label == "Measured accuracy")
    assert float(shown.value) == pytest.approx(float(history["accuracy"].iloc[-1]), abs=1e-4)
    assert not any(m.label == "Predicted accuracy" for m in app.metric)
    frontier = next(f for f in figures(app) if f["layout"].get("title", {}).get("text", "").startswith("Budget frontier"))
    names = {t["name"] for t in frontier["data"]}
    assert "current ranks (measured)" in names and "current ranks (predicted)" not in names
    # ... and the prediction, fitted on that run, would have reproduced it
    caption = next(c.value for c in app.caption if c.value.startswith("These exact ranks were measured"))
    assert float(caption.split("the prediction (")[1].split(")")[0]) == pytest.approx(float(shown.value), abs=1e-3)
    assert any("fitted on 1 measured run" in c.value for c in app.caption)
    # other ranks: a prediction again, drawn as the star
    app.slider[0].set_value(0.3).run()
    next(b for b in app.button if b.label == "Fill from rank ratio").click().run()
    assert predicted() < 1.0 and not any(m.label == "Measured accuracy" for m in app.metric)


@pytest.mark.slow
def test_the_budget_frontier_gathers_runs_and_sweeps_and_loads_a_point(app):
    app.switch_page("pages/mismatch.py").run()
    app.button[0].click().run()  # the default sweep: three methods at four rank ratios
    app.switch_page("pages/rank_editor.py").run()
    no_failure(app)
    # the sweep's four points of the editor's method calibrate its prediction before any run here
    assert any("fitted on 4 measured run(s)" in c.value for c in app.caption)
    frontier = next(f for f in figures(app) if f["layout"].get("title", {}).get("text", "").startswith("Budget frontier"))
    names = {t["name"] for t in frontier["data"]}
    # on arrival the editor's ranks (uniform 0.25, fwsvd-output) are a sweep point: shown measured, no star on it
    assert {"svd / uniform", "fwsvd-input / uniform", "fwsvd-output / uniform", "current ranks (measured)"} <= names
    assert "current ranks (predicted)" not in names
    sweep_point = next(t for t in frontier["data"] if t["name"] == "fwsvd-output / uniform")
    ring = next(t for t in frontier["data"] if t["name"] == "current ranks (measured)")
    assert (values(ring["x"])[0], values(ring["y"])[0]) in set(zip(values(sweep_point["x"]), values(sweep_point["y"]),
                                                                   strict=True))
    assert any(m.label == "Measured accuracy" for m in app.metric)
    next(b for b in app.button if b.label == "Fill from parameter budget").click().run()
    first = dict(app.session_state["ranks"])
    next(b for b in app.button if b.label == "Recompress and evaluate").click().run()
    app.slider[0].set_value(0.1).run()
    next(b for b in app.button if b.label == "Fill from rank ratio").click().run()
    assert dict(app.session_state["ranks"]) != first
    frontier = next(f for f in figures(app) if f["layout"].get("title", {}).get("text", "").startswith("Budget frontier"))
    run = next(t for t in frontier["data"] if t["name"] == "fwsvd-output / uniform")
    assert "run 1" in [c[0] for c in run["customdata"]]  # the run joined the sweep's line of the same method
    # the run and the sweep were scored on different examples: each has its dense line
    dense_lines = {a["text"] for a in frontier["layout"]["annotations"]}
    assert dense_lines == {f"dense on {n} examples" for n in {c[1] for c in run["customdata"]}}
    # choosing run 1's point loads its ranks and method again
    app.session_state["frontier"] = {"selection": {"points": [{"customdata": ["run 1", 100]}], "point_indices": [0],
                                                   "box": [], "lasso": []}}
    app.run()
    no_failure(app)
    assert not app.warning  # the method is set through the session state alone, without a competing default
    assert dict(app.session_state["ranks"]) == first
    assert app.session_state["rank_origin"] == "from run 1"


def test_the_toy_answers_its_rank_slider_and_connects_to_a_real_layer(app):
    from fwsvd_core.analysis.toy import toy_matrix, toy_solutions

    app.switch_page("pages/mismatch.py").run()
    no_failure(app)

    def shown() -> dict[str, str]:
        return {m.label: m.value for m in app.metric}

    at_one = shown()
    # issue 23, 13 and 14: sides named as input and output, and an error above 1 explained where it shows
    intro = next(m.value for m in app.markdown if "Plain SVD gives the best rank-r approximation" in m.value)
    assert "each row" not in intro and "input side" in intro and "output side" in intro
    assert float(at_one["Plain SVD: weighted error"]) > 1
    assert any("A relative error above 1 (plain SVD's weighted error here)" in c.value for c in app.caption)
    expected = toy_solutions(toy_matrix(), 1)
    assert float(at_one["Plain SVD: weighted error"]) == pytest.approx(expected["svd"].weighted_error, abs=1e-3)
    assert float(at_one["Weighted: weighted error"]) < float(at_one["Plain SVD: weighted error"])
    assert float(at_one["Weighted: plain error"]) > float(at_one["Plain SVD: plain error"])  # the mismatch
    next(s for s in app.slider if s.label == "Rank of the toy's reconstruction").set_value(3).run()
    at_three = shown()
    assert float(at_three["Plain SVD: plain error"]) < float(at_one["Plain SVD: plain error"])
    assert not any("above 1" in c.value for c in app.caption)  # every error below 1 at rank 3
    assert any("At rank 3" in c.value for c in app.caption)
    assert any("The same two numbers on a real layer" in m.value for m in app.markdown)
    # issue 23, 12: on the layer holding the largest Fisher share by default, and the user may pick another
    real = next(s for s in app.selectbox if s.label == "Real layer")
    shares = {o.split("  (")[0]: float(o.split("share ")[1].rstrip(")")) for o in real.options}
    assert real.value == max(shares, key=shares.get)
    smallest = min(shares, key=shares.get)
    real.set_value(smallest).run()
    no_failure(app)
    assert any(f"real layer** ({smallest}," in m.value for m in app.markdown)


def test_a_failed_sweep_is_said_once_and_the_rest_of_the_page_stays(app, monkeypatch):
    from fwsvd_core import screens
    from fwsvd_core.errors import FwsvdError

    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise FwsvdError("the sweep could not score this model")
    monkeypatch.setattr(screens, "run_sweep", failing)
    app.switch_page("pages/mismatch.py").run()
    next(b for b in app.button if b.label == "Run the sweep").click().run()
    assert [e.value for e in app.error] == ["the sweep could not score this model"]
    assert not app.exception
    assert any("Singular value spectra" in f["layout"].get("title", {}).get("text", "") for f in figures(app))
    app.run()  # another rerun: the failed request is not tried again on its own
    assert len(calls) == 1 and not app.error


def test_no_label_is_cut_off_on_the_editor_or_in_the_tables(app):
    """Issue 23, 8: metric labels fit a fifth of the page; table headers longer than a number get wide columns."""
    import pandas as pd

    from studio.tables import header_widths

    app.switch_page("pages/rank_editor.py").run()
    no_failure(app)
    assert all(len(m.label) <= 22 for m in app.metric), [m.label for m in app.metric if len(m.label) > 22]
    widths = header_widths(pd.DataFrame(columns=["method", "fisher error", "param ratio (layers)", "score"]))
    assert set(widths) == {"fisher error", "param ratio (layers)"}
    assert all(c["width"] in ("medium", "large") for c in widths.values())


def test_the_session_summary_holds_the_mismatch_sweep_and_no_instruction_to_click(app, monkeypatch):
    """Issue 23, 16 (and 15: the editor says why it opens on its method, and what this model's sweep measured)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    made = {}
    real = MediaFileManager.add_deferred

    def keep(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        made[file_name] = data_callable
        return real(self, data_callable, mimetype, coordinates, file_name, **kwargs)
    monkeypatch.setattr(MediaFileManager, "add_deferred", keep)
    app.switch_page("pages/mismatch.py").run()
    next(b for b in app.button if b.label == "Run the sweep").click().run()
    app.switch_page("pages/rank_editor.py").run()
    no_failure(app)
    why = next(c.value for c in app.caption if c.value.startswith("The editor opens on fwsvd-output"))
    assert "paper's FWSVD" in why and "On this model's sweep the better accuracy:" in why
    next(b for b in app.button if b.label == "Recompress and evaluate").click().run()
    html = made["fwsvd-session.html"]()
    assert "The SVD mismatch: svd, fwsvd-input, fwsvd-output" in html and "Fisher-weighted error" in html
    assert "Budget frontier" in html and "click a point" not in html and "Mismatch sweep on 400 examples" in html


def test_rank_editor_shows_the_latency_break_even_once_measured_here(app):
    """Issue 22, 3: beside the parameter break-even, the rank above which the factors cost time on this machine:
    empty until measured (a button, once per machine), then read from the cache on every visit."""
    import torch

    from fwsvd_core.analysis.latency import measured_break_even

    app.switch_page("pages/rank_editor.py").run()
    no_failure(app)
    column = lambda: list(app.dataframe[0].value["latency break-even"])  # noqa: E731  (the rank table)
    assert "latency break-even" not in app.dataframe[0].value.columns  # no empty column until measured
    next(b for b in app.button if b.label == "Measure the latency break-even here").click().run()
    no_failure(app)
    assert not [b for b in app.button if b.label == "Measure the latency break-even here"]  # measured: no button
    shapes = {(32, 32), (32, 64), (64, 32)}
    measured = {s: measured_break_even(*s, device="cpu", dtype=torch.float32, tokens=128) for s in shapes}
    assert all(value is not None and 0 <= value <= min(s) for s, value in measured.items())
    layers = app.session_state["ranks"]
    assert len(column()) == len(layers) and set(column()) <= set(measured.values())
