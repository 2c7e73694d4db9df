"""Experiments: study files (`study`), the batch runner (`runner`, CLI in `__main__`) and the
parameter checks every notebook runs first (`params`).

    python -m vitlib.experiments run experiments/<study>.yaml [--dry-run] [--list] [--only GLOB]
"""

from .kernel import python_kernel
from .params import NOT_EMPTY, at_least, between, notebook_params, satisfies, training_checks, validate_params
from .runner import plan_study, run_study
from .study import Run, Study, load_study

__all__ = ["NOT_EMPTY", "Run", "Study", "at_least", "between", "load_study", "notebook_params", "plan_study",
           "python_kernel", "run_study", "satisfies", "training_checks", "validate_params"]
