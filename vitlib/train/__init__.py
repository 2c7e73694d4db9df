"""Training: one config type (`TrainConfig`, named `RECIPES`), one loop (`fit`), one run-folder writer."""
from vitlib.train.config import RECIPES, TrainConfig, get_recipe
from vitlib.train.engine import fit
from vitlib.train.schedule import lr_at

__all__ = ["RECIPES", "TrainConfig", "fit", "get_recipe", "lr_at"]
