"""The runtime: device choice, autocast only where it runs, seeds that repeat, stop signals."""

import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from videoseq.config import ConfigError, load_config
from videoseq.errors import UsageError
from videoseq.runtime import StopSignals, amp_dtype, autocast_for, available_workers, seed_everything, select_device


def test_select_device_names_cuda_when_it_is_missing(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match="train.device='cuda:1' but CUDA is not available"):
        select_device("cuda:1")


def test_amp_setting_is_validated_and_is_a_no_op_on_cpu():
    assert load_config(None, ["train.amp=bf16"]).train.amp == "bf16"
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(None, ["train.amp=fp8"])
    assert all(amp_dtype(torch.device("cpu"), amp) is None for amp in (True, "bf16", "fp16"))
    with autocast_for(torch.device("cpu"), True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # no autocast on the CPU


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    seed_everything(8)
    assert draws() != first


def test_first_signal_asks_to_stop_and_a_second_sigint_interrupts_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_available_workers_counts_the_cores_this_process_may_use():
    assert 1 <= available_workers() <= (os.cpu_count() or 1)


def test_thread_policy_auto_is_this_processs_share_of_the_cores_and_honours_omp_num_threads(monkeypatch):
    import videoseq.runtime as runtime
    from videoseq.runtime import thread_policy

    monkeypatch.setattr(runtime, "available_workers", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert thread_policy("auto") == 8 and thread_policy(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun ranks on this machine share its cores
    assert thread_policy("auto") == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert thread_policy("auto") == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_policy("auto") == 2
    for wrong in (0, -1, "many", True, 1.5):
        with pytest.raises(ValueError, match="threads"):
            thread_policy(wrong)


@pytest.mark.parametrize(("given", "first", "seen"), [
    (None, "", "PASSIVE"),  # the policy: OpenMP threads sleep while they wait
    ("active", "", "active"),  # the user's choice is kept
    (None, "import torch\n", None),  # torch loaded first: its pool never sees it, so it is not set
])
def test_importing_videoseq_makes_openmp_waits_sleep_before_torch_loads(given, first, seen):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update({} if given is None else {"OMP_WAIT_POLICY": given})
    code = first + "import os, sys, videoseq\nprint(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(seen), str(bool(first))]  # importing videoseq alone does not load torch


def test_set_threads_sets_torch_and_opencv_and_train_threads_is_validated():
    import cv2

    from videoseq.runtime import set_threads

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        assert set_threads(2) == 2 and torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
        assert torch.get_num_interop_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    assert load_config(None, ["train.threads=4"]).train.threads == 4
    for wrong in ("train.threads=0", "train.threads=lots"):
        with pytest.raises(ConfigError, match="train.threads"):
            load_config(None, [wrong])


class ThreadCounts(torch.utils.data.Dataset):
    """Each item is the torch and OpenCV thread counts of the process that loads it."""

    videos = [("a", 0), ("b", 0)]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, key):
        import cv2

        return {"threads": (torch.get_num_threads(), cv2.getNumThreads())}


def test_dataloader_workers_compute_with_one_torch_and_one_opencv_thread():
    import cv2

    from videoseq.datasets import LoaderOptions, make_loader

    def counts(**options):
        loader = make_loader(ThreadCounts(), LoaderOptions(batch_size=1, num_workers=1, **options), shuffle=False)
        loader.collate_fn = lambda samples: samples[0]["threads"]
        return set(loader)

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)  # what a forked worker inherits
    try:
        assert counts() == {(1, 1)}
        assert counts(one_thread_per_worker=False) == {(1, 2)}  # torch's own worker set-up, OpenCV as inherited
    finally:
        cv2.setNumThreads(before)


def _resize_in_a_worker() -> None:
    import cv2

    from videoseq.runtime import limit_worker_threads

    limit_worker_threads()  # the call that waited for pool threads the fork did not copy
    cv2.resize(np.zeros((720, 1280, 3), np.uint8), (640, 360))


def test_workers_forked_after_opencv_used_its_thread_pool_start_and_finish():
    import multiprocessing

    import cv2

    import videoseq.runtime  # noqa: F401  (registers the fork handler)

    frame = np.random.default_rng(0).integers(0, 256, (1440, 2560, 3), dtype=np.uint8)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        hung = 0
        for _ in range(20):
            for _ in range(3):
                cv2.resize(frame, (1280, 720))  # the pool's threads are busy just before the fork
            child = multiprocessing.get_context("fork").Process(target=_resize_in_a_worker)
            child.start()
            child.join(timeout=20)
            if child.is_alive():
                hung += 1
                child.kill()
                child.join()
        assert hung == 0 and cv2.getNumThreads() == 2  # and the parent keeps its count
    finally:
        cv2.setNumThreads(before)
