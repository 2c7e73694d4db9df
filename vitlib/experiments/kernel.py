"""The Jupyter kernel that runs a study's notebooks: this interpreter, importing this vitlib."""

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

KERNEL_NAME = "python3"


@contextmanager
def python_kernel():
    """Yield the name of a kernel spec that runs this interpreter with this vitlib importable.

    `kernel_name="python3"` alone can start another Python: a `python3` spec in the user's
    Jupyter folder or on JUPYTER_PATH wins over the venv's own. So a spec of that name, with this
    interpreter's absolute path, is written to a temporary folder put first on JUPYTER_PATH
    for the duration; executed notebooks still say `python3` and open anywhere."""
    try:
        import ipykernel  # noqa: F401  the kernel below runs ipykernel_launcher
    except ImportError:
        raise RuntimeError(f"{sys.executable} lacks ipykernel: pip install ipykernel") from None
    import vitlib

    root = str(Path(vitlib.__file__).resolve().parent.parent)
    saved = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="vitlib-kernel-") as tmp:
        spec_dir = Path(tmp, "kernels", KERNEL_NAME)
        spec_dir.mkdir(parents=True)
        # the kernel app's own log at ERROR: its warning that a local kernel talks TCP without
        # encryption would open every run's log; no progress bars in batch logs (plain lines)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                         "--IPKernelApp.log_level=ERROR"],
                "display_name": "Python 3 (ipykernel)", "language": "python",
                "env": {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
                        "VITLIB_PROGRESS": "0"}}
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (tmp, saved) if p)
        try:
            yield KERNEL_NAME
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved


@contextmanager
def kernel(name=None):
    """`name` as given, or without one, `python_kernel()`."""
    if name:
        yield name
    else:
        with python_kernel() as name:
            yield name


KERNEL_STARTS = 3
KERNEL_DIED_AT_START = "Kernel died before replying to kernel_info"  # jupyter_client's words


def execute_notebook(notebook, executed, parameters, kernel_name, *, cwd=None, show_output=False, env=None):
    """Run `notebook` with papermill into `executed` with `parameters` injected, as vitlib runs
    every notebook (a study's runs, the report): in kernel `kernel_name`, no progress bar, the
    kernel's output echoed only when `show_output`, `env` added to the kernel's environment (this
    process's own is left alone, so parallel runs can't see each other's). papermill's errors
    propagate (PapermillExecutionError names the failing cell; the partial notebook is written).
    A kernel that dies before it answers (jupyter_client's port race when kernels start side by
    side: "Address already in use") ran no cell, so it is started again, up to KERNEL_STARTS times."""
    import papermill  # imported here: notebooks import vitlib.experiments for validate_params

    extra = {"kernel_manager_class": _manager_with_env(env)} if env else {}
    for start in range(1, KERNEL_STARTS + 1):
        try:
            papermill.execute_notebook(
                str(notebook), str(executed), parameters=parameters, kernel_name=kernel_name, language="python",
                progress_bar=False, cwd=None if cwd is None else str(cwd),
                stdout_file=sys.stdout if show_output else None, stderr_file=sys.stderr if show_output else None,
                **extra)
            return Path(executed)
        except RuntimeError as err:
            if start == KERNEL_STARTS or not str(err).startswith(KERNEL_DIED_AT_START):
                raise


def _manager_with_env(env):
    """nbclient's kernel manager, starting its kernel with `env` on top of this process's
    environment (jupyter_client passes start_kernel(env=...) to the kernel's process)."""
    from jupyter_client.manager import AsyncKernelManager

    class Manager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            return await super().start_kernel(**kw)

    return Manager
