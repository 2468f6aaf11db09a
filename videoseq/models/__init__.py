"""Models: per-frame torchvision backbones, temporal heads and the classifier joining them."""

from videoseq.models.backbones import BACKBONES, FrameBackbone
from videoseq.models.classifier import VideoClassifier, build_model
from videoseq.models.heads import HEADS

__all__ = ["BACKBONES", "HEADS", "FrameBackbone", "VideoClassifier", "build_model"]
