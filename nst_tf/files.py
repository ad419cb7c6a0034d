"""Writing files and folders atomically: the one way nst_tf puts a result on disk.

A result is written beside its final name and renamed into place (`os.replace`, atomic on one file
system), so a reader (a user, a model server watching a folder, a resumed run) sees the old file or
the new one, never half of one. What is written gets the permissions a plain `open` would give
(`mkstemp` and `mkdtemp` make private ones). No TensorFlow here: the command line uses it too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import shutil
import tempfile
from typing import Callable, Iterator

from nst_tf.errors import NstError


def umask() -> int:
    """This process's file mode creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _folder_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", fsync: bool = True) -> Iterator:
    """`with atomic_file(path) as f: f.write(...)`: the file appears at `path` complete when the block
    ends, or not at all if it raises; an `OSError` becomes an `NstError` naming `path`."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nst_tf-", suffix=os.path.splitext(path)[1], dir=_folder_of(path))
    except OSError as err:
        raise NstError(f"could not write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise NstError(f"could not write {path}: {err.strerror or err}") from None
        raise


def write_file(path: str, write: Callable[[str], None]) -> str:
    """Calls `write(tmp)` to make a file at a temporary path beside `path` (for writers that take a
    path, such as Keras' `model.save`), then renames it into place; returns `path`."""
    stem, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(_folder_of(path), f".{stem}.partial{ext}")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_folder(final: str, write: Callable[[str], None], overwrite: bool = False) -> str:
    """Calls `write(staging)` to fill a staging folder beside `final`, gives it normal permissions
    (a server running as another user must read it) and renames it to `final` (replacing an existing
    one only when `overwrite`); returns `final`. Nothing is left behind if `write` raises."""
    parent = _folder_of(final)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}-", dir=parent)
    try:
        write(staging)
        os.chmod(staging, 0o777 & ~umask())
        if os.path.exists(final):
            if not overwrite:
                raise NstError(f"{final} already exists")
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def folder_bytes(path: str) -> int:
    """Total size of the files under `path`."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


@contextlib.contextmanager
def native_stderr_quiet(quiet: bool = True):
    """File descriptor 2 pointed at /dev/null inside the block (when `quiet`): TensorFlow's C++ code
    (start-up probes, the SavedModel writer, the TF Lite converter) writes there directly, past
    Python's logging. Python errors raised inside still reach the user: stderr is restored first."""
    if not quiet:
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly(verbose: bool = False):
    """Imports TensorFlow and discovers its devices with its C++ start-up lines hidden (the probes,
    "failed call to cuInit" on a machine without a GPU, oneDNN's notice), and keeps its later C++
    log lines to errors (`TF_CPP_MIN_LOG_LEVEL=3`) unless the user set that variable. `verbose`:
    show everything. Python errors still reach the user."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_quiet(not verbose):
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs too
    return tf
