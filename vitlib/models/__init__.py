from vitlib.models.registry import create_model, list_models
from vitlib.models.vit import VisionTransformer

__all__ = ["VisionTransformer", "create_model", "list_models"]
