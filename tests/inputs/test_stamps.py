"""A file's stamp changes when it is rewritten in place, so that what was read from it is read again."""
import os

from fwsvd_core.inputs.stamps import files_stamp


def test_a_file_or_a_folder_rewritten_in_place_gets_a_new_stamp(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"12345678")
    first = files_stamp(folder)
    assert [name for name, _, _ in first] == ["config.json", "model.safetensors"] and files_stamp(folder) == first
    stat = (folder / "model.safetensors").stat()
    (folder / "model.safetensors").write_bytes(b"87654321")  # same size, new content
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert files_stamp(folder) != first
    single = files_stamp(folder / "config.json")
    (folder / "config.json").write_text('{"a": 1}')
    assert files_stamp(folder / "config.json") != single
    assert files_stamp(tmp_path / "missing") == ()
