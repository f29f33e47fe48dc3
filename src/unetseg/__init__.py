"""unetseg: U-Net semantic segmentation for water bodies."""

__version__ = "0.1.0"
