"""Where a result came from, read one way for every record that carries it (env.json of a run
folder, run.json of a study run, the environment columns of a benchmark CSV): the git state of the
code that ran, the software, the hardware."""
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from vitlib.device import PRECISION_ENV, cpu_description

# vitlib's own source tree: the commit recorded is the one of the code that ran, whatever the
# working directory (a study runs notebooks from the repository, a user from anywhere)
SOURCE = Path(__file__).resolve().parent


def _git(*args):
    """Output of a git command run in vitlib's source tree, or None (no git, not a checkout)."""
    try:
        out = subprocess.run(["git", *args], cwd=SOURCE, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state():
    """{"git_commit": the full commit or None, "git_dirty": tracked files differ from it (None outside git)}."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def short_commit():
    """`1a2b3c4`, `1a2b3c4+dirty`, or `unknown` outside git: the benchmark CSVs' commit column."""
    state = git_state()
    if state["git_commit"] is None:
        return "unknown"
    return state["git_commit"][:7] + ("+dirty" if state["git_dirty"] else "")


def environment_info():
    """Code version, software and hardware of this process (a run folder's env.json)."""
    cuda = torch.cuda.is_available()
    return {
        "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        **git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_description(),
        "precision_env": os.environ.get(PRECISION_ENV),  # what "auto" precision was told to mean
    }
