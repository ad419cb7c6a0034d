"""The one way results reach the disk (`nst_tf.files`) and the export base's checks (`nst_tf.export`)."""

import os

import pytest

from nst_tf import export, files
from nst_tf.errors import NstError


def test_an_atomic_file_appears_whole_with_normal_permissions_or_not_at_all(tmp_path):
    path = str(tmp_path / "out.bin")
    with files.atomic_file(path) as f:
        f.write(b"abc")
        assert not os.path.exists(path)  # nothing at the final name while it is written
    assert open(path, "rb").read() == b"abc"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~files.umask()
    with pytest.raises(RuntimeError):
        with files.atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("the writer failed")
    assert open(path, "rb").read() == b"abc" and os.listdir(tmp_path) == ["out.bin"]  # old file kept, no temp
    with pytest.raises(NstError, match="could not write .*missing"):
        with files.atomic_file(str(tmp_path / "missing" / "x.bin")) as f:
            f.write(b"x")


def test_a_folder_is_staged_made_readable_and_renamed_and_an_existing_one_kept_unless_overwrite(tmp_path):
    final = str(tmp_path / "models" / "1")

    def write(folder, text="one"):
        with open(os.path.join(folder, "a.txt"), "w") as f:
            f.write(text)

    assert files.write_folder(final, write) == final
    assert os.stat(final).st_mode & 0o777 == 0o777 & ~files.umask()  # not mkdtemp's private 0700
    with pytest.raises(NstError, match="already exists"):
        files.write_folder(final, lambda folder: write(folder, "two"))
    with pytest.raises(ZeroDivisionError):
        files.write_folder(final, lambda folder: 1 / 0, overwrite=True)
    assert open(os.path.join(final, "a.txt")).read() == "one"
    assert sorted(os.listdir(tmp_path / "models")) == ["1"]  # no staging folder left behind
    files.write_folder(final, lambda folder: write(folder, "two"), overwrite=True)
    assert open(os.path.join(final, "a.txt")).read() == "two" and files.folder_bytes(final) == 3


def test_write_file_renames_what_a_path_taking_writer_made(tmp_path):
    path = str(tmp_path / "net.keras")
    files.write_file(path, lambda tmp: open(tmp, "w").write("weights"))
    assert open(path).read() == "weights" and os.listdir(tmp_path) == ["net.keras"]


def test_versions_and_limits_are_checked_before_any_work(tmp_path):
    (tmp_path / "1").mkdir()
    with pytest.raises(NstError, match=r"1 already exists; choose another --version or pass --overwrite"):
        export.version_path(str(tmp_path), 1)
    assert export.version_path(str(tmp_path), 1, overwrite=True) == str(tmp_path / "1")
    for bad in (0, -1, True, "2"):
        with pytest.raises(NstError, match="version must be a positive integer"):
            export.version_path(str(tmp_path), bad)
    with pytest.raises(NstError, match="max_steps must be a positive integer"):
        export.Limits(max_steps=0).check()
    assert export.Limits().check() == export.Limits()
