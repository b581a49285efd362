"""The dashboard on a server: it listens on this machine only unless told otherwise, confines nothing then; what it
keeps for the server's lifetime follows files edited in place; an upload is split fairly. Driven through AppTest
like tests/test_pages.py (hostile paths of a dashboard served to others: the last section of tests/test_bad_input.py)."""
import os

import numpy as np
from conftest import make_tiny_model
from test_pages import make_app, no_failure


def test_on_this_machine_only_nothing_is_confined(tiny_models, glue_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("FWSVD_SERVE", raising=False)
    monkeypatch.setenv("FWSVD_ALLOWED_DIRS", str(tmp_path / "nowhere"))  # read only when served
    no_failure(make_app(str(tiny_models["bert"]), glue_dir).run())


def small_glue(folder, dev_rows: int) -> None:
    """An SST-2 folder of a GLUE layout with 64 training rows and `dev_rows` dev rows."""
    (folder / "SST-2").mkdir(parents=True, exist_ok=True)
    rows = lambda n, offset: "".join(f"sentence number {offset + i} is {'good' if i % 2 else 'bad'}\t{i % 2}\n"  # noqa: E731
                                     for i in range(n))
    (folder / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + rows(64, 0))
    (folder / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + rows(dev_rows, 1000))


def data_line(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Data:**"))


def test_a_data_file_edited_in_place_is_read_again_by_the_next_session(tiny_models, tmp_path):
    glue = tmp_path / "glue"
    small_glue(glue, 40)
    first = make_app(str(tiny_models["bert"]), glue, eval_subsample=0).run()
    no_failure(first)
    assert "40 of 40 dev examples" in data_line(first)
    stat = (glue / "SST-2" / "dev.tsv").stat()
    small_glue(glue, 24)  # edited in place
    os.utime(glue / "SST-2" / "dev.tsv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = make_app(str(tiny_models["bert"]), glue, eval_subsample=0).run()
    no_failure(second)
    assert "24 of 24 dev examples" in data_line(second)


def test_a_model_saved_again_in_place_is_loaded_again(tmp_path, minilm_dir):
    from studio.state import cached_model

    folder = make_tiny_model("bert", tmp_path / "model", minilm_dir, seed=0)
    first = cached_model(str(folder))
    assert cached_model(str(folder)) is first  # unchanged: the cached one
    weights = first.model.classifier.weight.detach().clone()
    make_tiny_model("bert", folder, minilm_dir, seed=1)  # saved again over the same folder
    again = cached_model(str(folder))
    assert again is not first and not np.allclose(again.model.classifier.weight.detach().numpy(), weights.numpy())


def test_an_uploaded_file_sorted_by_label_is_split_stratified_and_the_page_says_so(tiny_models, glue_dir):
    content = b"t,y\n" + b"".join(f"sentence {i},{int(i >= 30)}\n".encode() for i in range(40))  # sorted by label
    at = make_app(str(tiny_models["bert"]), glue_dir, upload=("sorted.csv", content), text_columns=("t",),
                  label_column="y", eval_subsample=0).run()
    no_failure(at)
    train, dev, _ = at.session_state["upload split"][1]
    assert set(dev.labels.tolist()) == {0, 1} and set(train.labels.tolist()) == {0, 1}
    assert any("stratified by label" in c.value and "seed 0" in c.value for c in at.caption)


def test_the_dashboard_listens_on_this_machine_only_unless_told_otherwise(monkeypatch):
    import tomllib
    from conftest import REPO

    from fwsvd_core.access import served_to_others

    monkeypatch.delenv("FWSVD_SERVE", raising=False)
    address = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]["address"]
    assert address == "localhost" and not served_to_others(address)
    assert served_to_others("0.0.0.0")  # `--server.address 0.0.0.0`, as README's "Serving it to others" says
    assert "--server.address 0.0.0.0" in (REPO / "README.md").read_text()


def test_a_closed_tab_no_longer_counts_as_needing_a_job(monkeypatch):
    import studio.serving

    connected = {"runtime-a"}

    class FakeRuntime:  # the server's sessions: a tab closed is no longer an active session
        @staticmethod
        def exists():
            return True

        @staticmethod
        def instance():
            return FakeRuntime

        @staticmethod
        def is_active_session(session_id):
            return session_id in connected

    monkeypatch.setattr(studio.serving, "Runtime", FakeRuntime)
    monkeypatch.setitem(studio.serving._runtime_ids, "owner-a", "runtime-a")
    assert studio.serving.session_present("owner-a")
    assert studio.serving.session_present("owner-never-seen")  # a session this server did not run: kept
    connected.clear()  # the tab is closed
    assert not studio.serving.session_present("owner-a")
