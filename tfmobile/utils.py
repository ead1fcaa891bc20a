"""Small helpers shared across the package."""

from __future__ import annotations

import os
import tempfile


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: never a torn file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def new_figure(**kwargs):
    """A matplotlib Figure that belongs to no pyplot backend: the library's plots never switch the backend
    (which would break a notebook's inline plots afterwards) and need no display."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path: str, **kwargs) -> None:
    """Render `fig` as a PNG (kwargs go to savefig) and write it atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    atomic_write_bytes(path, buffer.getvalue())
