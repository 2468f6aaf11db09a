"""Models: per-frame torchvision backbones, temporal heads, the classifier joining them, the captioner."""

from videoseq.models.backbones import BACKBONES, FrameBackbone
from videoseq.models.captioner import TASKS, VideoCaptioner, build_captioner
from videoseq.models.classifier import VideoClassifier, build_model
from videoseq.models.heads import HEADS

__all__ = ["BACKBONES", "HEADS", "TASKS", "FrameBackbone", "VideoCaptioner", "VideoClassifier", "build_captioner",
           "build_model"]
