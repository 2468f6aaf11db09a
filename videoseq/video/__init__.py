"""Video in: files, frame folders, cameras and streams become uint8 RGB frames.

- ``decoder``: video files (decord) and frame folders read as upright frames;
  every failure is a ``VideoDecodeError`` naming the file.
- ``containers``: whether an AVI, MP4/MOV or Matroska file was cut short (byte structure).
- ``probe``: open a video and decode a few frames: is it usable, and what does it hold?
- ``isolated``: decoding in worker processes, so a crash or a hang costs one file.
- ``cameras``: cameras, stream URLs and files through OpenCV, and the threaded reader of live sources.

Importing this package loads decord before OpenCV, whichever of its modules is
imported first (``videoseq/__init__.py`` imports it before anything else).
"""

import ctypes
import ctypes.util
import os

# decord reads its limits once, when its library loads: set them first. The EOF
# retry counter bounds the busy-wait for the last frames of a file whose header
# promises more frames than it holds (decord's default is 10240). It counts spins,
# not frames, so very low values fail on sound files: 16-256 made the real sample
# clips fail at random with 1-4 decoder threads, 1024 never did.
os.environ.setdefault("DECORD_EOF_RETRY_MAX", "1024")

# decord loads its own zlib 1.2.3 into the global symbol scope, and OpenCV's libpng, loaded
# after it, would call that one ("libpng error: bad parameters to zlib": every PNG frame
# unreadable); the system's zlib loaded first serves both (zlib stays backward compatible).
_zlib = ctypes.util.find_library("z")
if _zlib:
    ctypes.CDLL(_zlib, mode=ctypes.RTLD_GLOBAL)

# decord before cv2: with OpenCV's libraries loaded first, decord's bundled FFmpeg makes
# OpenCV's Qt windows (cv2.imshow, predict --show) crash with a segmentation fault.
import decord  # noqa: E402, F401, I001
import cv2  # noqa: E402, F401
