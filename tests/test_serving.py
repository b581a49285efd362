"""The dashboard served to others (FWSVD_SERVE=1 or a non-loopback address): every path a visitor types is confined
to the allowed folders, with one message that tells nothing about the server's files; and what the dashboard keeps
for the server's lifetime follows files edited in place. Driven through AppTest like tests/test_pages.py."""
import os
import shutil

import numpy as np
import pytest
from conftest import make_tiny_model
from test_pages import make_app, no_failure

REFUSAL = "This dashboard is served to others"


@pytest.fixture
def served(monkeypatch, tmp_path, tiny_models):
    """Served, with one allowed folder holding a model; a private folder beside it holds another model and a file."""
    root, private = tmp_path / "allowed", tmp_path / "private"
    root.mkdir()
    shutil.copytree(tiny_models["bert"], root / "bert")
    shutil.copytree(tiny_models["bert"], private / "bert")
    (private / "diary.txt").write_text("private")
    (private / "empty").mkdir()
    (root / "link").symlink_to(private)
    monkeypatch.setenv("FWSVD_SERVE", "1")
    monkeypatch.setenv("FWSVD_ALLOWED_DIRS", str(root))
    monkeypatch.delenv("FWSVD_DATA_DIR", raising=False)
    monkeypatch.delenv("FWSVD_DEFAULT_MODEL", raising=False)
    return root, private


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_a_model_outside_the_allowed_folders_is_refused_with_one_message_whatever_is_there(served, glue_dir,
                                                                                             monkeypatch):
    root, private = served
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))  # the operator's data folder: always readable
    seen = set()
    for model in (private / "bert", private / "diary.txt", private / "missing", private / "empty", root / "link" / "bert",
                  root / ".." / "private" / "bert", "~", "/etc"):
        shown = errors(make_app(str(model), glue_dir).run())
        assert len(shown) == 1 and shown[0].startswith(REFUSAL), (model, shown)
        seen.add(shown[0])
    assert len(seen) == 1
    message = seen.pop()
    for leak in ("private", "config.json", "is a file", "No such", "diary", "empty"):
        assert leak not in message
    at = make_app(str(root / "bert"), glue_dir).run()  # inside: loaded and scored
    no_failure(at)
    assert any(m.label == "Dense accuracy" for m in at.metric)


def test_the_directory_field_as_a_visitor_types_it_and_the_hub_field_cannot_read_local_folders(served, glue_dir,
                                                                                               monkeypatch):
    root, private = served
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    at = make_app(str(root / "bert"), glue_dir).run()
    box = next(t for t in at.text_input if t.label == "Directory")
    box.set_value(str(private / "bert")).run()
    assert [e for e in errors(at) if e.startswith(REFUSAL)]
    assert not any(m.label == "Dense accuracy" for m in at.metric)
    monkeypatch.chdir(private.parent)  # "private/bert" reads like a hub id, and names a local folder from here
    for typed in ("private/bert", str(private / "bert")):
        at = make_app("someone/model", glue_dir).run()
        next(r for r in at.radio if r.label == "Where the model comes from").set_value("Hugging Face hub id").run()
        next(t for t in at.text_input if t.label == "Hub id").set_value(typed).run()
        shown = errors(at)
        assert len(shown) == 1 and shown[0].startswith(REFUSAL), (typed, shown)


def test_a_glue_folder_outside_is_refused_and_the_operators_data_folder_is_read(served, glue_dir, monkeypatch):
    root, _ = served
    shown = errors(make_app(str(root / "bert"), glue_dir).run())
    assert shown and all(e.startswith(REFUSAL) for e in shown)
    missing = errors(make_app(str(root / "bert"), "/nonexistent/glue").run())
    assert missing == shown  # the same words whether the folder exists or not
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    no_failure(make_app(str(root / "bert"), glue_dir).run())


def test_saving_is_confined_to_the_allowed_folders(served, glue_dir, monkeypatch, tmp_path):
    root, private = served
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    at = make_app(str(root / "bert"), glue_dir).run()
    at.switch_page("pages/rank_editor.py").run()
    save = lambda folder: (next(t for t in at.text_input if t.label.startswith("Save the compressed")).set_value(folder).run(),  # noqa: E731
                           next(b for b in at.button if b.label == "Save compressed model").click().run())
    refused = []
    for folder in (str(private / "export"), str(private / "empty"), "~/fwsvd-export", str(root / "link" / "export"),
                   str(root / ".." / "elsewhere")):
        save(folder)
        refused.append([e for e in errors(at) if e.startswith("Could not save")])
    assert all(r == refused[0] and len(r) == 1 and REFUSAL in r[0] for r in refused)
    assert sorted(p.name for p in private.iterdir()) == ["bert", "diary.txt", "empty"]
    assert not any((private / "empty").iterdir()) and not (tmp_path / "elsewhere").exists()
    assert not (os.path.expanduser("~/fwsvd-export") and os.path.exists(os.path.expanduser("~/fwsvd-export")))
    save(str(root / "exports" / "mine"))
    no_failure(at)
    assert any("Saved to" in s.value for s in at.success) and (root / "exports" / "mine" / "config.json").is_file()


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
