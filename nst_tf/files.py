"""Writing files and folders atomically: the one way nst_tf puts a result on disk.

A result is written beside its final name and renamed into place (`os.replace`, atomic on one file
system), so a reader (a user, a model server watching a folder, a resumed run) sees the old file or
the new one, never half of one. What is written gets the permissions a plain `open` would give
(`mkstemp` and `mkdtemp` make private ones). No TensorFlow here: the command line uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import shutil
import tempfile
from typing import Callable, Iterator, Optional

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


def read_cache_json(name: str) -> dict:
    """The JSON object `name` in `cache_dir()`; {} when it is missing, damaged or not an object."""
    try:
        with open(os.path.join(cache_dir(), name)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_cache_json(name: str, data: dict, what: str) -> None:
    """Writes `data` as `name` in `cache_dir()`, atomically; a cache that cannot be written only costs
    what it would have saved (`what`, said on stderr), never the run."""
    path = os.path.join(cache_dir(), name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_file(path, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    except (OSError, NstError) as err:
        sys.stderr.write(f"nst-tf: could not keep {what} in {path}: {err}\n")


def cache_dir() -> str:
    """nst_tf's cache folder: `$NST_TF_CACHE_DIR`, else `nst_tf/` under `$XDG_CACHE_HOME` or `~/.cache`."""
    return os.environ.get("NST_TF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nst_tf"
    )


XLA_CACHE_FILES = 64  # XLA programs kept between processes (about 1 MB each), the newest first


def keep_xla_programs() -> Optional[str]:
    """Makes TensorFlow keep the XLA programs it compiles in `cache_dir()/xla` (its persistent
    compilation cache, `--tf_xla_persistent_cache_directory`), so the next process that runs the
    same step at the same size loads its program instead of compiling it (a 10-step refine at 512 px
    with XLA: 21.6 s -> 19.8 s whole process, docs/performance.md; runs without XLA are unchanged).
    Pruned to the newest `XLA_CACHE_FILES`. Nothing when `$TF_XLA_FLAGS` already names a cache or
    `$NST_TF_XLA_CACHE=0`; must run before TensorFlow reads its flags. Returns the folder or None."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if os.environ.get("NST_TF_XLA_CACHE") == "0" or "persistent_cache_directory" in flags:
        return None
    folder = os.path.join(cache_dir(), "xla", _machine_tag())  # programs are compiled for this CPU
    try:
        os.makedirs(folder, exist_ok=True)
        kept = sorted((e for e in os.scandir(folder) if e.is_file()), key=lambda e: e.stat().st_mtime, reverse=True)
        for old in kept[XLA_CACHE_FILES:]:
            os.unlink(old.path)
    except OSError:  # a read-only home: compile as usual
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
    return folder


def _machine_tag() -> str:
    """What an XLA program is compiled for, as a short hash: the CPU's model and instruction set,
    and TensorFlow's version (read without importing it)."""
    import hashlib
    import platform
    from importlib import metadata

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = "".join(line for line in f.read().splitlines(True)[:40] if line.startswith(("model name", "flags")))
    except OSError:
        pass
    try:
        version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        version = "?"
    return hashlib.sha256(f"{platform.machine()}|{cpu}|{version}".encode()).hexdigest()[:12]


def import_tensorflow_quietly(verbose: bool = False):
    """Imports TensorFlow and discovers its devices with its C++ start-up lines hidden (the probes,
    "failed call to cuInit" on a machine without a GPU, oneDNN's notice), and keeps its later C++
    log lines to errors (`TF_CPP_MIN_LOG_LEVEL=3`) unless the user set that variable. `verbose`:
    show everything. Python errors still reach the user. Compiled XLA programs are kept between
    processes (`keep_xla_programs`)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        keep_xla_programs()
    with native_stderr_quiet(not verbose):
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs too
    return tf
