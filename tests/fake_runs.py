"""What fabricated run records need of a model (the report and study tests write run folders
without training them)."""
import copy
import functools
import json

import torch

from vitlib.models import create_model
from vitlib.train.runfolder import describe_model


@functools.lru_cache(maxsize=None)
def _described(model, model_args_json, img_size, num_classes):
    with torch.device("meta"):  # built without memory: only its structure is read
        net = create_model(model, num_classes=num_classes, img_size=img_size, **json.loads(model_args_json))
    description = describe_model(net)
    return {"family": description["family"], "shape": description.get("shape")}


def model_description(model, model_args=None, img_size=32, num_classes=10):
    """{"family", "shape"}: what a run of registry model `model` records of its architecture
    (runfolder.describe_model), as a fresh copy; one build per distinct model."""
    return copy.deepcopy(_described(model, json.dumps(model_args or {}, sort_keys=True), img_size, num_classes))
