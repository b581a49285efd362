"""Bad input from a visitor of a dashboard served to others (FWSVD_SERVE=1, as a non-loopback address would make
it): every path typed into the model fields, the GLUE folder field and the save box is confined to the allowed
folders, with one message that tells nothing about the server's files. Driven through AppTest like tests/test_pages.py
(the same in the browser: tests/test_browser.py)."""
import os
import shutil

import pytest
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
    assert not os.path.exists(os.path.expanduser("~/fwsvd-export"))
    save(str(root / "exports" / "mine"))
    no_failure(at)
    assert any("Saved to" in s.value for s in at.success) and (root / "exports" / "mine" / "config.json").is_file()
