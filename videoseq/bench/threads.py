"""``videoseq bench threads``: training clips/s of the demo config under each thread setting, idle and loaded.

Settings: ``before`` (no limits, what videoseq did before its thread policy: torch's
intra-op pool of every core with OpenMP's spinning waits, OpenCV's default in the main
process and in every DataLoader worker; the child loads torch before videoseq, so the
policy's ``OMP_WAIT_POLICY`` is not set), ``auto`` (the policy's default,
``runtime.thread_policy``) and ``N`` (``--threads N``: N threads in the main process,
one in each worker; sleeping waits, as ``auto``). Each measurement is a fresh process
whose environment has no ``OMP_NUM_THREADS`` / ``OMP_WAIT_POLICY`` / ... (an inherited
setting would hide what the setting does); it trains
``warmup`` steps of the demo config on synthetic gestures, then times ``steps`` more,
DataLoader workers and decoding included.

"Loaded" runs the same beside a competing CPU load the benchmark starts itself
(``--load-kind``): by default another training job per core (resnet18 steps on random
batches with torch's own thread defaults, the other work a machine that trains videos
runs), or processes spinning on the CPU (``spin``, two per core by default). The load
runs in a session of its own, as other programs do (another terminal, another user's
job, a service): where the kernel schedules by session (autogroup, the default of
desktop Linux kernels), each session gets its share of the cores and the training run
competes with the load as a whole, not thread by thread. ``--load-session same`` starts
the load in the benchmark's own session instead, where every thread competes with every
other; the table says which, and whether the kernel groups sessions. The slowdown the
load causes to ``before`` is printed beside the figures (a busy machine was seen to slow
it 7-10x), so a lighter or heavier load reads for what it is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from videoseq.errors import UsageError
from videoseq.resources import CONFIGS

DEMO_CONFIG = CONFIGS / "demo.yaml"
TRAIN_JOB = """
import torch, torchvision
model = torchvision.models.resnet18(num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
clips, labels = torch.randn(8, 3, 112, 112), torch.randint(0, 10, (8,))
steps = 0
while True:
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(clips), labels).backward()
    optimizer.step()
    steps += 1
    if steps == 1:
        print("ready", flush=True)
"""
LOAD_KINDS = {"train": TRAIN_JOB, "spin": "print('ready', flush=True)\nwhile True: pass"}
LOAD_PER_CORE = {"train": 1, "spin": 2}  # processes per core of the default competing load of each kind
LOAD_SESSIONS = ("own", "same")
AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")
INHERITED_LIMITS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                    "TQDM_MININTERVAL")
# the measuring child: ``before`` loads torch first, as a program that never heard of the thread policy
CHILD = "{first}import sys\nfrom videoseq.bench.threads import child_main\nchild_main(sys.argv[1])"


def data_overrides(root: Path) -> list[str]:
    return [f"data.root={root / 'videos'}", "data.format=ucf101", f"data.splits_dir={root / 'splits'}"]


def measure(setting: str, root: Path, steps: int, warmup: int, overrides: list[str]) -> dict:
    """In this (fresh) process: apply ``setting``, train ``warmup`` + ``steps`` steps, time the last ``steps``."""
    import cv2
    import torch

    from videoseq.config import load_config
    from videoseq.datasets import make_loader
    from videoseq.engine.loops import Progress, train_step
    from videoseq.engine.objectives import build_objective
    from videoseq.engine.trainer import build_datasets, build_optimization, loader_options
    from videoseq.models.build import build_model_from_config
    from videoseq.prepare import resolve_manifest
    from videoseq.runtime import openmp_waits, seed_everything, set_threads

    config = load_config(DEMO_CONFIG, data_overrides(root) + overrides + ["train.device=cpu"])
    if setting != "before":
        set_threads("auto" if setting == "auto" else int(setting))
    seed_everything(0)
    manifest = resolve_manifest(config.data)
    train_set, _ = build_datasets(config, manifest)
    options = dataclasses.replace(loader_options(config), one_thread_per_worker=setting != "before")
    loader = make_loader(train_set, options, shuffle=True)
    device, progress = torch.device("cpu"), Progress()
    model = build_model_from_config(config, len(manifest.classes)).train()
    optimization = build_optimization(model, config.train, len(loader), device)
    objective = build_objective(config, manifest, None)
    batches, clips, start = iter(loader), 0, time.perf_counter()
    for step in range(warmup + steps):
        batch = next(batches, None)
        if batch is None:  # the next epoch
            loader.sampler.set_epoch(progress.epoch + 1)
            progress.epoch += 1
            batches = iter(loader)
            batch = next(batches)
        if step == warmup:
            clips, start = 0, time.perf_counter()
        train_step(model, batch, objective, optimization, device=device, cfg=config.train, progress=progress,
                   dataset=train_set)
        clips += len(batch["label"])
    seconds = time.perf_counter() - start
    return {"setting": setting, "clips_per_s": clips / seconds, "torch_threads": torch.get_num_threads(),
            "opencv_threads": cv2.getNumThreads(), "workers": config.data.num_workers, "waits": openmp_waits()}


def uninherited_env() -> dict[str, str]:
    """This process's environment without the thread settings a child must not inherit (``INHERITED_LIMITS``)."""
    return {k: v for k, v in os.environ.items() if k not in INHERITED_LIMITS}


def check_load(kind: str, session: str) -> None:
    if kind not in LOAD_KINDS:
        raise UsageError(f"bench threads: unknown load kind {kind!r}; use one of {sorted(LOAD_KINDS)}")
    if session not in LOAD_SESSIONS:
        raise UsageError(f"bench threads: unknown load session {session!r}; use one of {list(LOAD_SESSIONS)}")


def run_child(setting: str, root: Path, steps: int, warmup: int, overrides: list[str]) -> dict:
    """``measure`` in a fresh interpreter, without inherited thread limits."""
    env = uninherited_env()
    args = json.dumps({"setting": setting, "root": str(root), "steps": steps, "warmup": warmup,
                       "overrides": overrides})
    code = CHILD.format(first="import torch\n" if setting == "before" else "")
    done = subprocess.run([sys.executable, "-c", code, args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench threads: the {setting!r} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class CompetingLoad:
    """``processes`` programs of ``kind`` (:data:`LOAD_KINDS`) running while the block runs.

    Each starts with torch's and OpenCV's own thread defaults (no inherited limits), in a
    session of its own unless ``own_session`` is false; the block starts once every one of
    them has done its first piece of work.
    """

    def __init__(self, processes: int, kind: str = "train", own_session: bool = True) -> None:
        check_load(kind, "own" if own_session else "same")
        self.processes, self.kind, self.own_session = processes, kind, own_session
        self.running: list[subprocess.Popen] = []
        self.logs: list = []

    def __enter__(self) -> CompetingLoad:
        command = [sys.executable, "-c", LOAD_KINDS[self.kind]]
        self.logs = [tempfile.TemporaryFile("w+") for _ in range(self.processes)]  # stderr: never blocks the load
        self.running = [subprocess.Popen(command, env=uninherited_env(), text=True, stdout=subprocess.PIPE,
                                         stderr=log, start_new_session=self.own_session) for log in self.logs]
        for process, log in zip(self.running, self.logs):
            if process.stdout.readline().strip() != "ready":
                process.wait()
                log.seek(0)
                message = log.read()[-2000:]
                self.__exit__()
                raise RuntimeError(f"bench threads: the competing {self.kind!r} load did not start:\n{message}")
        return self

    def __exit__(self, *exc) -> None:
        for process in self.running:
            process.kill()
        for process in self.running:
            process.wait()
            process.stdout.close()
        for log in self.logs:
            log.close()
        self.running, self.logs = [], []


def competing_load(load: int | None, cores: int, kind: str = "train") -> int:
    """Processes of the loaded condition: ``--load`` as given, else ``LOAD_PER_CORE[kind]`` per core."""
    return LOAD_PER_CORE[kind] * cores if load is None else load


def sessions_grouped() -> bool | None:
    """Whether the kernel shares the cores between sessions first (autogroup); None where it does not say."""
    try:
        return AUTOGROUP.read_text().strip() == "1"
    except OSError:
        return None


def load_label(load: int, kind: str, session: str) -> str:
    what = {"train": "training jobs", "spin": "spinning"}[kind]
    grouped = {True: "the kernel groups sessions", False: "the kernel does not group sessions",
               None: "session grouping unknown"}[sessions_grouped()]
    return f"{load} {what}, {session} session; {grouped}"


def default_settings(cores: int) -> list[str]:
    return ["before", "auto", *(str(n) for n in range(1, cores + 1))]


def measure_all(settings: list[str], root: Path, *, steps: int, warmup: int, repeats: int, load: int,
                load_kind: str, load_session: str, overrides: list[str]) -> dict[str, dict]:
    """``{setting: {"idle": best clips/s, "loaded": best clips/s, "threads": ...}}`` over ``repeats`` rounds."""
    found: dict[str, dict] = {s: {"idle": 0.0, "loaded": 0.0} for s in settings}
    for condition in ("idle", "loaded"):
        for round_ in range(repeats):
            order = settings if round_ % 2 == 0 else settings[::-1]  # drift hits every setting alike
            with CompetingLoad(load if condition == "loaded" else 0, load_kind, load_session == "own"):
                for setting in order:
                    result = run_child(setting, root, steps, warmup, overrides)
                    found[setting][condition] = max(found[setting][condition], result["clips_per_s"])
                    found[setting]["threads"] = (result["torch_threads"], result["opencv_threads"], result["workers"],
                                                 result["waits"])
                    print(f"  {condition} round {round_ + 1}: {setting:7s} {result['clips_per_s']:7.1f} clips/s",
                          flush=True)
    return found


def setting_label(setting: str, threads: tuple[int, int, int, str]) -> str:
    torch_threads, opencv, workers, waits = threads
    if setting == "before":
        return (f"before: no limits (torch {torch_threads}, OpenCV {opencv}, in each of {workers} workers too; "
                f"{waits} waits)")
    name = "auto (the default)" if setting == "auto" else f"--threads {setting}"
    return f"{name}: {torch_threads} main, 1 per worker; {waits} waits"


def report(found: dict[str, dict], load: str) -> dict[str, float]:
    """Print the table side by side (``load`` says what the load was) and the ratios; return the ratios."""
    width = max(len(setting_label(s, r["threads"])) for s, r in found.items())
    print(f"\nloaded: {load}")
    print(f"{'setting':{width}s} {'idle clips/s':>13s} {'loaded clips/s':>15s}")
    for setting, row in found.items():
        print(f"{setting_label(setting, row['threads']):{width}s} {row['idle']:13.1f} {row['loaded']:15.1f}")
    ratios = {}
    if "before" in found and found["before"]["loaded"] > 0:
        ratios["before_slowdown_loaded"] = found["before"]["idle"] / found["before"]["loaded"]
        print(f"the load slows the old default (before) {ratios['before_slowdown_loaded']:.1f}x "
              "(a busy shared machine was seen to slow it 7-10x)")
    if "auto" in found:
        best = max(r["idle"] for r in found.values())
        ratios["default_vs_best_idle"] = found["auto"]["idle"] / best
        line = f"default / best idle: {ratios['default_vs_best_idle']:.3f} (goal >= 0.900)"
        if "before" in found:
            ratios["default_vs_before_loaded"] = found["auto"]["loaded"] / found["before"]["loaded"]
            line += f"; default / before under load: {ratios['default_vs_before_loaded']:.2f}x (goal >= 3)"
        print(line)
    return ratios


def bench_threads(*, steps: int = 30, warmup: int = 5, per_class: int = 20, repeats: int = 1,
                  load: int | None = None, load_kind: str = "train", load_session: str = "own",
                  settings: list[str] | None = None, overrides: list[str] | None = None) -> dict:
    """Measure every setting idle and loaded, print them side by side; returns the figures and ratios."""
    from videoseq.runtime import available_workers
    from videoseq.synth import write_gesture_dataset

    check_load(load_kind, load_session)  # before the dataset is written
    cores = available_workers()
    load = competing_load(load, cores, load_kind)
    settings = settings or default_settings(cores)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_gesture_dataset(Path(tmp) / "g", per_class=per_class, seed=0, progress=False)
        print(f"bench threads: demo config ({DEMO_CONFIG.name}) training steps on synthetic gestures "
              f"({per_class} per class), {steps} steps timed after {warmup}, best of {repeats}; {cores} cores, "
              f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        found = measure_all(settings, root, steps=steps, warmup=warmup, repeats=repeats, load=load,
                            load_kind=load_kind, load_session=load_session, overrides=list(overrides or []))
    ratios = report(found, load_label(load, load_kind, load_session))
    print(f"load average {os.getloadavg()[0]:.2f} at the end (the competing load included)")
    return {"settings": found, **ratios}


def child_main(given: str) -> None:
    """The measuring child (``CHILD``): one ``measure``, its result as the last line of stdout."""
    given = json.loads(given)
    print(json.dumps(measure(given["setting"], Path(given["root"]), given["steps"], given["warmup"],
                             given["overrides"])))
