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


@pytest.mark.slow
def test_xla_programs_are_kept_between_processes_pruned_and_left_to_a_user_who_chose(tmp_path, monkeypatch):
    """A process that compiles a step with XLA leaves its program in the cache; the next loads it
    (the cache's file is not written again); the folder keeps the newest XLA_CACHE_FILES; a user's
    own TF_XLA_FLAGS cache or NST_TF_XLA_CACHE=0 is left alone."""
    import subprocess
    import sys

    code = (
        "import nst_tf.files as f; tf = f.import_tensorflow_quietly(); "
        "g = tf.function(lambda x: tf.reduce_sum(tf.sin(x) * 2.0), jit_compile=True); print(float(g(tf.ones(7))))"
    )
    env = {**os.environ, "NST_TF_CACHE_DIR": str(tmp_path)}
    env.pop("TF_XLA_FLAGS", None)
    folder = tmp_path / "xla" / files._machine_tag()  # a program runs only on the CPU it was compiled for
    written = []
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        kept = sorted(os.listdir(folder))
        assert len(kept) == 1 and kept[0].startswith("xla_compile_cache"), kept
        written.append(os.stat(folder / kept[0]).st_mtime_ns)
    assert written[0] == written[1]  # the second process loaded the program: nothing compiled or written
    for k in range(files.XLA_CACHE_FILES + 3):
        (folder / f"old{k}").write_bytes(b"")
        os.utime(folder / f"old{k}", (k, k))  # older than the program
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    kept = os.listdir(folder)
    assert len(kept) == files.XLA_CACHE_FILES and not {"old0", "old1", "old2", "old3"} & set(kept)
    assert any(name.startswith("xla_compile_cache") for name in kept)
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/elsewhere")
    assert files.keep_xla_programs() is None and os.environ["TF_XLA_FLAGS"].endswith("=/elsewhere")
    monkeypatch.delenv("TF_XLA_FLAGS")
    monkeypatch.setenv("NST_TF_XLA_CACHE", "0")
    assert files.keep_xla_programs() is None and "TF_XLA_FLAGS" not in os.environ
