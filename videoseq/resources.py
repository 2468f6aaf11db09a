"""What videoseq ships and what it is checked against: the configs, and the folder of real sample clips.

The YAML configs are package data (``videoseq/configs/``; the repository's top-level
``configs/`` is a link to it), so an installed package finds them too. The real
sample clips live outside the package, in ``../shared/videos`` beside a source
checkout; the environment variable ``VIDEOSEQ_VIDEOS`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
VIDEOS_VARIABLE = "VIDEOSEQ_VIDEOS"


def shared_videos() -> Path:
    """The folder of real sample clips: ``$VIDEOSEQ_VIDEOS``, else ``../shared/videos`` beside the checkout."""
    given = os.environ.get(VIDEOS_VARIABLE)
    return Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "videos"
