"""videoseq: video sequence classification, gesture recognition and per-clip captioning."""

__version__ = "0.1.0"

# The decoder first, whatever module is imported: it loads decord before OpenCV, and the
# other order makes OpenCV windows (cv2.imshow, predict --show) crash (see video/__init__.py).
from videoseq import video as _video  # noqa: E402, F401
