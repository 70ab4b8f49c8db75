"""Atomic file and folder writing: an interrupted run never leaves a half-written output."""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs):
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(
        dir=directory, prefix=".tmp-", suffix=os.path.basename(path)
    )
    try:
        with os.fdopen(handle, mode, **open_kwargs) as f:
            yield f
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


@contextlib.contextmanager
def atomic_folder(path: str):
    """Yield a temporary folder beside ``path`` to build in; rename it onto ``path`` only if the block
    succeeds (an existing ``path`` is moved aside first and removed once the new one is in place)."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    built = tempfile.mkdtemp(dir=parent, prefix=".tmp-%s-" % os.path.basename(path))
    try:
        os.chmod(built, 0o755)  # mkdtemp's private 0700 would otherwise become the folder's mode
        yield built
        aside = built + ".old"
        if os.path.lexists(path):
            os.rename(path, aside)
        try:
            os.rename(built, path)
        except BaseException:
            if os.path.lexists(aside):
                os.rename(aside, path)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
