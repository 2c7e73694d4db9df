"""Atomic file writes, the one way vitlib writes a file someone may read while it is written:
a temporary file in the same folder, flushed to disk, then renamed over the target (os.replace is
atomic on POSIX), so a process killed at any moment leaves the old file or the new one, never half.
And `file_lock`, the one way processes take turns on something (a run folder, a cache entry); and
`load_checkpoint`, the one way a torch file (checkpoint, weights) is read."""
import contextlib
import errno
import json
import os
import socket
import tempfile
from datetime import datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: file_lock does not lock
    fcntl = None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


def atomic_write(path, write):
    """Call `write(binary_file)` on a temporary file beside `path`, then rename it over `path`.

    A full disk raises OSError(ENOSPC) with `path` as its filename (not the temporary file's);
    the old file stays as it was."""
    path = Path(path)
    try:
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
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, "no space left on device", str(path)) from err


def atomic_write_bytes(path, data):
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent=2):
    atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def read_json(path):
    """The JSON in `path`; ValueError naming the file when it is empty or not JSON."""
    data = Path(path).read_bytes()
    try:
        return json.loads(data)
    except ValueError as err:  # bad JSON or bad UTF-8
        problem = "is empty" if not data.strip() else f"is not valid JSON ({err})"
        raise ValueError(f"{path} {problem}") from None


class FileLocked(RuntimeError):
    """Raised by `file_lock(path, wait=False)` when another process holds the lock."""

    def __init__(self, path, holder):
        self.path, self.holder = path, holder or "another process"
        super().__init__(f"{path} is locked by {self.holder}")


@contextlib.contextmanager
def file_lock(path, *, wait=True):
    """Hold an exclusive lock on the file `path` for the block; the file is deleted after it.

    The lock is the kernel's (flock): it ends with its process, so a lock a killed process left is
    free for the next one, whatever its file says. The file names the holder ("pid 812 on gpu3
    since 2025-01-31T09:12:05+00:00"): with wait=False a second process gets FileLocked saying
    so, instead of waiting. Yields the line of the holder before, if it died holding the lock
    (else ""). Without fcntl (Windows) nothing is locked.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield ""
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            # the last holder deletes the file before it lets go: a waiter may hold a deleted
            # file, which locks nothing; then it takes the new one
            current, mine = os.stat(path), os.fstat(fd)
            if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            raise FileLocked(path, holder) from None
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        before = os.read(fd, 4096).decode(errors="replace").strip()
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        yield before
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


def run_lock(folder) -> Path:
    """The lock file of a run folder, taken by whatever trains into it (the study runner, `vitlib
    train`): beside it, so that moving the folder aside keeps the lock."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".lock")


def load_checkpoint(path, map_location="cpu"):
    """A torch file of tensors and plain values (fit's checkpoint.pt, a state dict); ValueError
    naming the file when it is empty, truncated or damaged."""
    import torch  # here: the study runner uses this module without torch

    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    try:  # weights_only: tensors and plain Python values only, so no code runs from a file
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as err:  # torch's reader raises RuntimeError, OSError, EOFError, ... on a bad file
        if "Weights only load failed" in str(err):  # whole, but with pickled objects besides tensors
            raise ValueError(f"{path} holds Python objects other than tensors and plain values; refused for "
                             "safety (unpickling them could run code): load only files of tensors, e.g. one "
                             "saved with torch.save(model.state_dict())") from err
        reason = str(err).strip().split("\n")[0].split(". ")[0]
        raise ValueError(f"{path} is truncated or damaged ({type(err).__name__}: {reason})") from err


# what a command line says, in one line, when the disk refuses a write (no traceback)
_WRITE_ERRORS = {errno.ENOSPC: "no space left on device", errno.EACCES: "permission denied",
                 errno.EPERM: "permission denied", errno.EROFS: "read-only file system"}


def write_error_message(error, remedy):
    """The one-line message for an OSError a command cannot recover from by itself (a full disk, a
    folder it may not write), or None for any other OSError. remedy: how to continue afterwards."""
    what = _WRITE_ERRORS.get(error.errno)
    if what is None:
        return None
    where = f" writing {error.filename}" if error.filename else ""
    fix = ("free some space" if error.errno == errno.ENOSPC
           else "choose a folder you may write to, or fix its permissions")
    return f"error: {what}{where}; {fix}, then {remedy}"
