"""The motion commands of the command line: ``videoseq synth camera-motion`` and ``videoseq fuse``.

Thin, like ``cli``: each command parses its flags and calls the module that does the work
(``camera_motion``, ``fusion``); ``cli.build_parser`` adds them.
"""

from __future__ import annotations

import argparse

from videoseq.flags import non_negative_float, non_negative_int, positive_int


def cmd_synth_camera(args: argparse.Namespace) -> int:
    from videoseq.camera_motion import write_camera_motion_clips, write_split_manifest

    clips = write_camera_motion_clips(args.out, args.sources, per_class=args.per_class, frames=args.frames,
                                      size=args.size, seed=args.seed)
    manifest = write_split_manifest(args.out, args.out, clips, args.test_sources, val_every=args.val_every)
    print(f"wrote camera-motion clips of {len(clips)} sources and {manifest} (test: {', '.join(args.test_sources)})")
    return 0


def add_camera_motion(kinds) -> None:
    c = kinds.add_parser("camera-motion", help="clips of real videos seen through a panning, tilting, zooming, "
                         "rotating or still crop window, split by source video",
                         description="example: videoseq synth camera-motion data/camera ../shared/videos/vtest.avi "
                         "../shared/videos/box.mp4 ../shared/videos/Megamind.avi --test-sources Megamind; then "
                         "videoseq train configs/motion.yaml --set data.manifest=data/camera/manifest.csv")
    c.add_argument("out", help="folder for the clips (videos/<class>/...) and the splits")
    c.add_argument("sources", nargs="+", help="real video files to cut the clips from")
    c.add_argument("--test-sources", nargs="+", required=True,
                   help="file stems of the sources whose clips are the test split")
    c.add_argument("--per-class", type=positive_int, default=24, help="clips per class per source")
    c.add_argument("--frames", type=positive_int, default=20, help="frames per clip")
    c.add_argument("--size", type=positive_int, default=96, help="side of the square clips in pixels")
    c.add_argument("--seed", type=non_negative_int, default=0, help="seed of the crop-window paths")
    c.add_argument("--val-every", type=non_negative_int, default=8,
                   help="every N-th clip of a training source goes to val (0: none)")
    c.set_defaults(func=cmd_synth_camera)


def cmd_fuse(args: argparse.Namespace) -> int:
    from videoseq.fusion import fuse_checkpoints
    from videoseq.outputs import check_output

    check_output(args.out, flag="--out", overwrite=args.overwrite, inputs=args.checkpoints)
    weights = args.weights or [1.0] * len(args.checkpoints)
    out = fuse_checkpoints(args.checkpoints, weights, args.out)
    print(f"wrote {out}: {' + '.join(args.checkpoints)}, weights {' : '.join(f'{w:g}' for w in weights)}")
    return 0


def add_fuse(sub) -> None:
    p = sub.add_parser("fuse", help="two-stream late fusion: one checkpoint of an RGB and a motion model",
                       description="example: videoseq fuse runs/rgb/best.pt runs/flow/best.pt --weights 1 1.5 "
                       "--out runs/fused.pt; then videoseq eval runs/fused.pt, videoseq predict runs/fused.pt "
                       "clip.avi, videoseq export runs/fused.pt (the fused probability is the weighted mean of the "
                       "streams' softmax; docs/motion.md)")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="trained streams (e.g. RGB, then flow)")
    p.add_argument("--weights", nargs="+", type=non_negative_float,
                   help="one per checkpoint (default: equal; TSN: 1 1.5)")
    p.add_argument("--out", required=True, help="the fused checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_fuse)
