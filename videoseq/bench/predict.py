"""``videoseq bench predict``: videos/s over a folder of real clips, the archive path beside a plain loop.

The folder holds ``--videos`` symlinks to the real sample clips (``resources.shared_videos``,
every clip that decodes, in turn). The same checkpoint (a config with random weights:
an untrained model runs at the same speed) classifies them three ways, each timed end to
end, checkpoint loading and the CSV included:

- **per-file loop**: one process decodes and classifies each video in turn
  (``Predictor.predict_video``), as a script over a folder would;
- **archive path**: ``predict_to_csv``, what ``videoseq predict --csv`` runs: decoding ahead
  in ``--workers`` isolated processes while the model runs, a journal line per video;
- **torchrun**: ``videoseq predict`` under ``torchrun --nproc_per_node=--ranks`` (gloo), one
  decoding worker per rank, process start-up included.

Memory is the resident set of the process (and, for the archive path, of its decoding
workers) sampled every 0.5 s: the peak, and the growth from the end of the first
``warmup`` videos to the peak. CPU is the seconds of processor time per video of every
process of the path (user + system): the work, whatever the load; the archive path can
only turn its spare cores into speed when the cores are free. "Other work" is how many
cores the rest of the machine kept busy, on average, while a path ran (``/proc/stat``'s
busy time less the path's own): under Linux's per-session CPU groups (autogroup) one
job of another session on a 2-core machine holds a core, and a path gets the other
whatever its number of processes, so its ratio then follows its CPU s/video. The
machine's load average is printed too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from videoseq.archive import ArchiveOptions
from videoseq.bench.loader import rss_mb
from videoseq.checkpoint import checkpoint_payload, open_source, save_checkpoint
from videoseq.journal import part_paths
from videoseq.predict import Predictor
from videoseq.predict_files import PredictOptions, predict_to_csv
from videoseq.resources import CONFIGS, shared_videos
from videoseq.tables import write_csv
from videoseq.video.decoder import VideoDecodeError, find_videos

CLASSES = [f"class_{i}" for i in range(10)]


@dataclass
class PathTiming:
    name: str
    videos: int
    seconds: float
    peak_mb: float | None = None
    growth_mb: float | None = None
    workers_mb: float | None = None
    cpu_s: float | None = None  # processor seconds of every process of the path, user + system
    others: float | None = None  # cores kept busy by the rest of the machine meanwhile, on average

    @property
    def rate(self) -> float:
        return self.videos / self.seconds


class MemoryWatch:
    """Samples this process's resident memory (and its descendants') every 0.5 s while ``done()`` counts videos."""

    def __init__(self, done: Callable[[], int], warmup: int, children: bool = False) -> None:
        self.done, self.warmup, self.children = done, warmup, children
        self.samples: list[tuple[int, float, float]] = []  # (videos done, this process MB, descendants MB)
        self.cpu: dict[int, float] = {}  # descendant -> its processor seconds, last seen
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            below = descendants(os.getpid()) if self.children else []
            self.cpu.update({pid: max(self.cpu.get(pid, 0.0), cpu_s(pid)) for pid in below})  # 0 once gone
            below = sum(rss_mb(pid) for pid in below)
            self.samples.append((self.done(), rss_mb(), below))

    def __enter__(self) -> MemoryWatch:
        self.start_cpu, self.start_busy, self.start = time.process_time(), machine_busy_s(), time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.cpu_total = time.process_time() - self.start_cpu + sum(self.cpu.values())
        busy = machine_busy_s() - self.start_busy
        self.others = max(0.0, busy - self.cpu_total) / (time.perf_counter() - self.start)

    def summary(self) -> tuple[float, float, float]:
        """Peak MB, growth from the end of the warm-up to the peak (MB), peak of the descendants (MB)."""
        if not self.samples:
            return rss_mb(), 0.0, 0.0
        after = [mb for done, mb, _ in self.samples if done >= self.warmup] or [self.samples[-1][1]]
        peak = max(mb for _, mb, _ in self.samples)
        return peak, max(after) - after[0], max(w for _, _, w in self.samples)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def cpu_s(pid: int) -> float:
    """Processor seconds (user + system) of a process so far, from /proc; 0 for one that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_s() -> float:
    """Processor seconds every core of the machine has been busy (or taken by the hypervisor) since boot."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def archive_folder(folder: Path, videos: int, checkpoint: Path) -> list[str]:
    """``videos`` symlinks in ``folder`` to the sample clips that the model's test views decode from."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    clips = []
    for clip in find_videos(shared_videos()):
        try:
            predictor.read_views(clip)  # also brings the file into the page cache
            clips.append(clip)
        except VideoDecodeError:
            continue
    if not clips:
        raise RuntimeError(f"no sample clip in {shared_videos()} decodes; set VIDEOSEQ_VIDEOS to a folder of clips")
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(videos):
        link = folder / f"{n:05d}_{clips[n % len(clips)].name}"
        if not link.exists():
            link.symlink_to(clips[n % len(clips)])
    return [str(p) for p in sorted(folder.iterdir())[:videos]]


def per_file_loop(checkpoint: Path, paths: list[str], csv_path: Path, warmup: int) -> PathTiming:
    count = [0]
    start = time.perf_counter()
    with MemoryWatch(lambda: count[0], warmup) as watch:
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
        rows = []
        for path in paths:
            probs = predictor.predict_video(path)
            rows.append([path, predictor.classes[int(probs.argmax())], round(float(probs.max()), 6)])
            count[0] += 1
        write_csv(csv_path, ["path", "label_1", "score_1"], rows)
    peak, growth, _ = watch.summary()
    return PathTiming("per-file loop", len(paths), time.perf_counter() - start, peak, growth, cpu_s=watch.cpu_total,
                      others=watch.others)


def archive_path(checkpoint: Path, paths: list[str], csv_path: Path, workers: int, warmup: int) -> PathTiming:
    journal = csv_path.with_name(csv_path.name + ".journal")
    start = time.perf_counter()
    entries = lambda: sum(p.read_bytes().count(b"\n") - 1 for p in part_paths(journal))  # noqa: E731
    with MemoryWatch(entries, warmup, children=True) as watch:
        options = PredictOptions(topk=1, device="cpu", archive=ArchiveOptions(workers=workers, progress=False))
        predict_to_csv(checkpoint, paths, csv_path, options)
    peak, growth, workers_mb = watch.summary()
    return PathTiming(f"archive path ({workers} decoding workers)", len(paths), time.perf_counter() - start, peak,
                      growth, workers_mb, watch.cpu_total, watch.others)


def torchrun_path(checkpoint: Path, folder: Path, videos: int, csv_path: Path, ranks: int) -> PathTiming:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "videoseq", "predict", str(checkpoint), str(folder), "--csv", str(csv_path), "--topk", "1",
               "--workers", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with MemoryWatch(lambda: 0, 0, children=True) as watch:  # for the CPU of the ranks and their workers
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun failed ({done.returncode}): {done.stderr[-2000:]}")
    return PathTiming(f"torchrun {ranks} ranks, gloo (1 worker each)", videos, time.perf_counter() - start,
                      cpu_s=watch.cpu_total, others=watch.others)


def bench_predict(config: str | None = None, *, videos: int = 500, workers: int = 2, ranks: int = 2,
                  warmup: int = 50, out: str | None = None, overrides: list[str] | None = None) -> list[PathTiming]:
    """Time the three paths over one folder; print them side by side; returns the timings."""
    torch.set_num_threads(1)  # one core for the model in every path; the rest is the decoders'
    work = Path(out or tempfile.mkdtemp(prefix="bench_predict_"))
    source = open_source(config or CONFIGS / "gestures.yaml", overrides)
    checkpoint = save_checkpoint(work / "model.pt", checkpoint_payload(source.model(len(CLASSES), pretrained=False),
                                                                       source.config, CLASSES))
    paths = archive_folder(work / "videos", videos, checkpoint)
    load = os.getloadavg()
    timings = [per_file_loop(checkpoint, paths, work / "loop.csv", warmup),
               archive_path(checkpoint, paths, work / f"archive_{time.time_ns()}.csv", workers, warmup)]
    if ranks > 1:
        timings.append(torchrun_path(checkpoint, work / "videos", len(paths), work / f"ranks_{time.time_ns()}.csv",
                                     ranks))
    m = source.config.model
    print(f"bench predict: {len(paths)} videos (links to {len({os.path.realpath(p) for p in paths})} real clips), "
          f"{m.backbone}+{m.head}, {source.config.data.frames} frames of {source.config.data.size} px, "
          f"{source.config.data.test_views} test views, {os.cpu_count()} CPU cores, one torch thread per process")
    print(report(timings, warmup))
    print(f"load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}")
    return timings


def report(timings: list[PathTiming], warmup: int) -> str:
    base = timings[0].rate
    lines = [f"{'path':44s} {'videos/s':>9s} {'vs loop':>8s} {'CPU s/video':>12s} {'peak RSS MB':>12s} "
             f"{'growth MB':>10s} {'workers MB':>11s} {'other work':>11s}"]
    for t in timings:
        cells = [f"{v:.0f}" if v is not None else "-" for v in (t.peak_mb, t.growth_mb, t.workers_mb)]
        cpu = f"{t.cpu_s / t.videos:.3f}" if t.cpu_s is not None else "-"
        others = f"{t.others:.2f} cores" if t.others is not None else "-"
        lines.append(f"{t.name:44s} {t.rate:9.2f} {t.rate / base:7.2f}x {cpu:>12s} {cells[0]:>12s} "
                     f"{cells[1]:>10s} {cells[2]:>11s} {others:>11s}")
    lines.append(f"(growth: from the end of the first {warmup} videos to the peak; workers MB: the decoding "
                 "workers together, at their peak; CPU: user + system seconds of every process of the path; "
                 "other work: cores the rest of the machine kept busy meanwhile, on average)")
    return "\n".join(lines)
