"""Test-session settings: decoded-data caches go to a throwaway folder (never ~/.cache), figures
render off-screen. Set at import so subprocesses (CLI, torchrun, notebook kernels) inherit them."""
import os
import tempfile

os.environ.setdefault("VITLIB_CACHE", tempfile.mkdtemp(prefix="vitlib-test-cache-"))
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
