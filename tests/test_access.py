"""Which paths a visitor may use when the dashboard is served to others: the roots, and one refusal for the rest."""
import os

import pytest

from fwsvd_core.access import (
    allowed_roots,
    check_model_source,
    is_loopback,
    readable_path,
    served_to_others,
    writable_path,
)
from fwsvd_core.cache import cache_root
from fwsvd_core.errors import FwsvdError, OutsideAllowedFolders


@pytest.fixture
def served(monkeypatch, tmp_path):
    """A server with one allowed folder holding a model, beside a private folder with a model, a file and a link."""
    root, private = tmp_path / "allowed", tmp_path / "private"
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text("{}")
    (private / "model").mkdir(parents=True)
    (private / "model" / "config.json").write_text("{}")
    (private / "notes.txt").write_text("secret")
    (root / "escape").symlink_to(private)
    monkeypatch.setenv("FWSVD_ALLOWED_DIRS", os.pathsep.join([str(root), str(tmp_path / "other")]))
    monkeypatch.delenv("FWSVD_DATA_DIR", raising=False)
    monkeypatch.delenv("FWSVD_DEFAULT_MODEL", raising=False)
    return root, private


@pytest.mark.parametrize("address, loopback", [("localhost", True), ("127.0.0.1", True), ("::1", True),
                                               ("[::1]", True), ("127.0.1.1", True), ("0.0.0.0", False),
                                               ("::", False), ("192.168.1.20", False), ("myhost", False),
                                               ("", False), (None, False)])
def test_only_a_loopback_address_keeps_the_dashboard_to_this_machine(address, loopback, monkeypatch):
    monkeypatch.delenv("FWSVD_SERVE", raising=False)
    assert is_loopback(address) is loopback
    assert served_to_others(address) is not loopback
    monkeypatch.setenv("FWSVD_SERVE", "1")  # behind a proxy on this machine: served all the same
    assert served_to_others(address) is True


def test_paths_under_the_roots_pass_resolved(served):
    root, _ = served
    assert readable_path(str(root / "model")) == (root / "model").resolve()
    assert writable_path(str(root / "new" / "export")) == (root / "new" / "export").resolve()
    assert allowed_roots()[0] == root.resolve()


def test_everything_outside_the_roots_gets_one_identical_message(served, tmp_path):
    root, private = served
    home_file = "~/" + os.urandom(4).hex()
    outside = [private / "model", private / "notes.txt", private / "missing", private, root / ".." / "private",
               root / "escape", root / "escape" / "model", "~", home_file, "/", "/etc/passwd", tmp_path / "otherwise"]
    messages = set()
    for path in outside:
        for check in (readable_path, writable_path):
            with pytest.raises(OutsideAllowedFolders) as refused:
                check(str(path))
            messages.add(str(refused.value))
    assert len(messages) == 1  # nothing says whether the path exists, is a file or a model
    message = messages.pop()
    assert str(root.resolve()) in message and "private" not in message and "notes" not in message
    assert issubclass(OutsideAllowedFolders, FwsvdError)


def test_a_hub_id_passes_but_a_path_or_a_local_folder_in_the_hub_field_is_checked(served, monkeypatch, tmp_path):
    root, private = served
    check_model_source("textattack/bert-base-uncased-SST-2")
    check_model_source("demo:sst2")
    check_model_source(str(root / "model"))
    monkeypatch.chdir(tmp_path)  # "private/model" reads like a hub id, and names a folder here
    for source in ("private/model", str(private / "model"), "../private", "~", "./private"):
        with pytest.raises(OutsideAllowedFolders):
            check_model_source(source)
    monkeypatch.setenv("FWSVD_DEFAULT_MODEL", str(private / "model"))  # the operator's own choice
    check_model_source(str(private / "model"))


def test_without_allowed_dirs_only_the_exports_folder_and_the_operators_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("FWSVD_ALLOWED_DIRS", raising=False)
    monkeypatch.setenv("FWSVD_DATA_DIR", str(tmp_path / "glue"))
    exports = cache_root() / "exports"
    assert allowed_roots() == [exports.resolve()]
    writable_path(str(exports / "mine"))
    readable_path(str(tmp_path / "glue" / "SST-2"))
    with pytest.raises(OutsideAllowedFolders):
        writable_path(str(tmp_path / "glue" / "export"))  # the data folder is read, never written
    with pytest.raises(OutsideAllowedFolders):
        readable_path(str(cache_root() / "fisher"))
