"""Test-session settings: decoded-data caches go to a throwaway folder (never ~/.cache), figures
render off-screen. Set at import so subprocesses (CLI, torchrun, notebook kernels) inherit them."""
import os
import tempfile

os.environ.setdefault("VITLIB_CACHE", tempfile.mkdtemp(prefix="vitlib-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
