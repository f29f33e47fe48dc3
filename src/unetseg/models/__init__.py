from .registry import MODELS, build_model, count_parameters
from .unet import UNet

__all__ = ["MODELS", "UNet", "build_model", "count_parameters"]
