"""Test-session settings: decoded-data caches go to a throwaway folder (never ~/.cache), removed
when the session ends; figures render off-screen. Set at import so subprocesses (CLI, torchrun,
notebook kernels) inherit them."""
import atexit
import os
import shutil
import tempfile

if "VITLIB_CACHE" not in os.environ:
    os.environ["VITLIB_CACHE"] = tempfile.mkdtemp(prefix="vitlib-test-cache-")
    atexit.register(shutil.rmtree, os.environ["VITLIB_CACHE"], ignore_errors=True)
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Two shared cores: one intra-op thread is faster than two fighting over them. Modules that
    train use it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
