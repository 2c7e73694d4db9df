"""Atomic file writes, the one way vitlib writes a file someone may read while it is written:
a temporary file in the same folder, flushed to disk, then renamed over the target (os.replace is
atomic on POSIX), so a process killed at any moment leaves the old file or the new one, never half."""
import json
import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


def atomic_write(path, write):
    """Call `write(binary_file)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data):
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent=2):
    atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())
