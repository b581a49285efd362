import pandas as pd
import plotly.graph_objects as go

from fwsvd_core.analysis.summary import summary_html


def test_the_summary_is_one_offline_page_with_facts_figures_and_tables():
    figures = [go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name=f"trace {i}")) for i in range(3)]
    runs = pd.DataFrame([{"run": 1, "method": "svd", "accuracy": 0.51}, {"run": 2, "method": "kfac", "accuracy": 0.84}])
    page = summary_html("A <session>", {"model": "demo:sst2", "task": "sst2"}, figures, {"Runs": runs})
    assert page.startswith("<!DOCTYPE html>") and "A &lt;session&gt;" in page
    assert "<td>demo:sst2</td>" in page and "<td>kfac</td>" in page and "<td>0.84</td>" in page
    assert page.count("trace 0") == 1 and "trace 2" in page
    assert 'src="https://cdn.plot.ly' not in page and "<script src=" not in page  # plotly.js inlined: opens offline
    assert len(page) > 1_000_000 and page.count("Plotly.newPlot") == 3
