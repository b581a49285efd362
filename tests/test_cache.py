"""Where the cache lives."""
from pathlib import Path

from fwsvd_core.cache import cache_root


def test_the_cache_follows_the_setting_else_the_platform_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("FWSVD_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("FWSVD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "fwsvd_studio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "fwsvd_studio")
