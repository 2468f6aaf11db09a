"""The errors a user can cause, by kind: each names the file, key or flag, what was wrong and what to do.

Every command ends at one boundary (``cli.main``) that turns these into one line on
stderr and an exit status; anything else is an internal error (a bug), reported as
one line that says to rerun with ``--debug`` for the traceback.

- ``UsageError`` (exit 2): what the user asked for cannot be done as asked: a flag,
  a ``--set`` override, a config key or value, an output path that would replace or
  destroy something (``outputs.OutputError``), a config file that is missing or
  malformed (``config.ConfigError``);
- ``InputError`` (exit 1): a file or source the command reads cannot be used: a
  video (``video.decoder.VideoDecodeError``), a checkpoint or export
  (``checkpoint.CheckpointError``), a manifest or class list
  (``manifest.ManifestError``), a cache (``cache.CacheError``), too many bad videos.

The subclasses keep ``ValueError`` or ``RuntimeError`` as a second base where they
always had one, so ``except ValueError`` around library calls goes on working.
This module imports nothing from videoseq: every room may raise these.
"""

from __future__ import annotations

USAGE_STATUS = 2
INPUT_STATUS = 1
INTERNAL_STATUS = 70  # EX_SOFTWARE (sysexits.h): a bug, not the user's doing
DEBUG_VARIABLE = "VIDEOSEQ_DEBUG"  # VIDEOSEQ_DEBUG=1 shows the traceback, like --debug


class VideoseqError(Exception):
    """A failure the user can fix; ``str()`` is the whole message and ``exit_status`` the command's status."""

    exit_status = INPUT_STATUS


class UsageError(VideoseqError, ValueError):
    """A flag, config key or value, or output path cannot be used as given (exit 2)."""

    exit_status = USAGE_STATUS


class InputError(VideoseqError):
    """A file or source the command reads cannot be used (exit 1)."""

    exit_status = INPUT_STATUS


def one_line(message: object, limit: int = 2000) -> str:
    """A message on one line: newlines and tabs become spaces, runs of spaces one, at most ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
