"""vitlib: a paper-faithful Vision Transformer, its CNN rivals, and the tools to study them."""
from vitlib.flops import count_flops, count_params
from vitlib.models import VisionTransformer, create_model, list_models
from vitlib.models.weights import load_pretrained

__all__ = ["VisionTransformer", "count_flops", "count_params", "create_model", "list_models", "load_pretrained"]
__version__ = "0.1.0"
