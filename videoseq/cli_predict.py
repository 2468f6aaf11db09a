"""The command line's predict flags: streaming (``--stream``), event and segment options, and the flags of a run
over many videos (``archive.ArchiveOptions``); ``cli.add_predict`` adds them."""

from __future__ import annotations

import argparse
import dataclasses

from videoseq.errors import UsageError
from videoseq.flags import non_negative_float, non_negative_int, positive_float, positive_int, probability


def given(args: argparse.Namespace, options: type) -> dict:
    """The flags of ``args`` that set a field of the dataclass ``options``; the others keep its defaults."""
    fields = [f.name for f in dataclasses.fields(options)]
    return {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}


def archive_options(args: argparse.Namespace):
    from videoseq.archive import ArchiveOptions

    return ArchiveOptions(**given(args, ArchiveOptions))


def event_options(args: argparse.Namespace):
    from videoseq.events import EventOptions

    return EventOptions(smooth=args.smooth, method=args.smooth_method, threshold=args.threshold,
                        background=args.background, min_duration=args.min_duration, refractory=args.refractory)


def add_archive_arguments(p, what: str) -> None:
    """Decoding workers, resuming and replacing: the flags of a run over many videos (archive.ArchiveOptions)."""
    p.add_argument("--workers", type=positive_int, help="decoding processes (of each torchrun rank); a file that "
                   "crashes or hangs one costs only itself (default: 2, as archive.ArchiveOptions)")
    p.add_argument("--timeout", type=positive_float, help="seconds one video (or one chunk of a long one) may take to "
                                                 "decode (default: 60)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the run whose journal lies beside {what} (stopped, killed, or a rank that died)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing {what} (and the journal of an unfinished run)")


def cmd_stream(args: argparse.Namespace) -> int:
    from videoseq.live import StreamOptions, stream_to_outputs
    from videoseq.video.cameras import SourceOptions

    if len(args.sources) != 1:
        raise UsageError(f"--stream takes one SOURCE (a file, a camera index or a URL), got {len(args.sources)}")
    events = event_options(args) if args.events else None
    source = SourceOptions(queue_size=args.queue, retries=args.retries, retry_delay=args.retry_delay,
                           max_frozen=args.max_frozen, stall_timeout=args.stall_timeout)
    options = StreamOptions(topk=args.topk, show=args.show, save_video=args.save_video, csv=args.csv,
                            jsonl=args.jsonl, events=events, max_frames=args.max_frames, source=source,
                            overwrite=args.overwrite)
    return stream_to_outputs(args.checkpoint, args.sources[0], options, device=args.device,
                             threads="auto" if args.threads is None else args.threads)


def add_stream_arguments(p) -> None:
    from videoseq.events import SMOOTHING, EventOptions
    from videoseq.video.cameras import SourceOptions

    source, events = SourceOptions(), EventOptions()  # the defaults of the flags below
    g = p.add_argument_group("streaming (--stream)", "example: videoseq predict best.pt 0 --stream --show "
                             "--jsonl live.jsonl --events --background Nothing")
    g.add_argument("--stream", action="store_true",
                   help="run frame by frame on one SOURCE: a file, a camera index (0) or an rtsp/http URL")
    g.add_argument("--show", action="store_true", help="a window with the top labels, scores and fps (q quits)")
    g.add_argument("--save-video", metavar="OUT.mp4", help="write the annotated video (default: none)")
    g.add_argument("--jsonl", help="one JSON line per inference step and per gesture event (default: none)")
    g.add_argument("--max-frames", type=positive_int,
                   help="stop after this many frames (default: at the end of the source)")
    g.add_argument("--queue", type=positive_int, default=source.queue_size,
                   help="reader queue length; a live source drops frames beyond it")
    g.add_argument("--retries", type=non_negative_int, default=source.retries,
                   help="reopen a failing camera/stream this many times")
    g.add_argument("--retry-delay", type=non_negative_float, default=source.retry_delay, help="seconds between retries")
    g.add_argument("--max-frozen", type=positive_int, default=source.max_frozen,
                   help="identical frames in a row that mean a frozen camera")
    g.add_argument("--stall-timeout", type=positive_float, default=source.stall_timeout,
                   help="seconds without a frame before giving up")
    g.add_argument("--events", action="store_true", help="also write gesture events (start, end, label, peak)")
    e = p.add_argument_group("events (--stream --events) and segments (--timeline)")
    e.add_argument("--smooth", type=positive_int, default=events.smooth, help="steps (frames or windows) smoothed over")
    e.add_argument("--smooth-method", choices=SMOOTHING, default=events.method,
                   help="how the window of step scores is smoothed")
    e.add_argument("--threshold", type=probability, default=events.threshold,
                   help="smoothed score an active step needs")
    e.add_argument("--background", help="the 'nothing happens' class, never an event or a segment (default: none)")
    e.add_argument("--min-duration", type=non_negative_float, default=events.min_duration,
                   help="shortest event or segment in seconds")
    e.add_argument("--refractory", type=non_negative_float, default=events.refractory,
                   help="seconds after an event or segment with no new one")
