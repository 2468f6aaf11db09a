"""What ``best.pt`` is chosen on: the run's validation split and its score, and early stopping.

``data.val_split: auto`` (the default) validates on the manifest's ``val`` split when
it has one (``videoseq prepare folder`` makes one). Without it the run validates on
``test`` and says so loudly, at the start and in its closing summary: choosing the
checkpoint on the split it is then scored on makes that score optimistic. Without
either, best.pt is the epoch of the best training accuracy, said as loudly. A split
named explicitly must hold videos; UCF101's convention (``val_split: test``,
validating on testlist01) is what its configs say.

``train.early_stop: {patience: N, min_delta: x}`` stops after N validations in a row
whose score did not beat the best so far by more than ``min_delta``; the count lives
in the run's ``Progress`` (every checkpoint), so a resumed run stops where the
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from videoseq.config import VAL_SPLIT_AUTO, Config
from videoseq.errors import UsageError
from videoseq.manifest import Manifest

AUTO_SPLITS = ("val", "test")  # what auto looks for, in order


@dataclass(frozen=True)
class Selection:
    """The split a run validates on (None: none) and what best.pt is then chosen by."""

    split: str | None
    videos: int = 0  # videos in that split
    score: str = "video accuracy"  # video accuracy | BLEU-4 (caption models)
    warning: str = ""  # said at the start and in the summary when the choice is not a real validation split

    @property
    def what(self) -> str:
        """``val video accuracy``, or ``training accuracy``."""
        return "training accuracy" if self.split is None else f"{self.split} {self.score}"

    @property
    def over(self) -> str:
        return "no validation split" if self.split is None else f"{self.videos} videos"

    def describe(self) -> str:
        """``val video accuracy (45 videos)``, or ``training accuracy (no validation split)``."""
        return f"{self.what} ({self.over})"


def select_split(config: Config, manifest: Manifest) -> Selection:
    """The validation split ``data.val_split`` names in ``manifest`` (resolving ``auto``).

    Raises ``ValueError`` naming the split and the splits the manifest has when an
    explicitly named split holds no video, and when ``train.early_stop`` is set but there
    is nothing to validate on.
    """
    d, splits = config.data, dict(sorted(manifest.splits().items()))
    score = "BLEU-4" if config.model.captions else "video accuracy"
    if d.val_split == VAL_SPLIT_AUTO:
        found = next((s for s in AUTO_SPLITS if splits.get(s)), None)
        warning = "" if found == "val" else auto_warning(found, splits)
    elif d.val_split is None:
        found, warning = None, "data.val_split is null: best.pt is the epoch of the best training accuracy"
    elif not splits.get(d.val_split):
        raise UsageError(f"data.val_split={d.val_split!r}: the manifest has no videos in split {d.val_split!r}; "
                         f"its splits are {splits}. Name one of them, or use auto (val when present) or null "
                         f"(choose best.pt on training accuracy)")
    else:
        found, warning = d.val_split, ""
    if found == d.train_split and found is not None:
        warning = f"data.val_split={found!r} is the training split: the validation score measures memory"
    if found is None and config.train.early_stop:
        raise UsageError(f"train.early_stop watches the validation score, but this run has no validation split "
                         f"(data.val_split={d.val_split!r}, splits {splits}); give the manifest a val split or "
                         f"drop train.early_stop")
    return Selection(found, splits.get(found, 0) if found else 0, score, warning)


def auto_warning(found: str | None, splits: dict[str, int]) -> str:
    if found == "test":
        return (f"the manifest has no 'val' split (splits {splits}): best.pt is chosen on the test split, so its "
                f"test score is optimistic. Give it a val split (videoseq prepare folder makes one) or say "
                f"data.val_split: test to keep UCF101's convention")
    return (f"the manifest has neither a 'val' nor a 'test' split (splits {splits}): best.pt is the epoch of the "
            f"best training accuracy")


def with_split(config: Config, selection: Selection) -> Config:
    """``config`` with ``data.val_split`` resolved: what the run folder's config.yaml records."""
    return dataclasses.replace(config, data=dataclasses.replace(config.data, val_split=selection.split))


def stale_after(stale: int, score: float, best: float | None, min_delta: float) -> int:
    """Validations in a row without an improvement of more than ``min_delta`` over ``best``, after ``score``;
    the first validation (``best`` None) sets the mark and is never stale."""
    return 0 if best is None or score > best + min_delta else stale + 1
