"""videoseq: video sequence classification, gesture recognition and per-clip captioning."""

__version__ = "0.1.0"
