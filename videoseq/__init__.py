"""videoseq: video sequence classification, gesture recognition and per-clip captioning."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# OpenMP threads that wait for work sleep instead of spinning (the thread policy, see
# runtime.py). libgomp reads this once, when torch loads it: so it is set here, before
# anything in videoseq imports torch, unless the user set it or torch is already loaded
# (its pool would not see it, and processes started from this one would differ from it).
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The decoder first, whatever module is imported: it loads decord before OpenCV, and the
# other order makes OpenCV windows (cv2.imshow, predict --show) crash (see video/__init__.py).
from videoseq import video as _video  # noqa: E402, F401
