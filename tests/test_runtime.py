"""The runtime: device choice, autocast only where it runs, seeds that repeat, stop signals."""

import os
import random
import signal

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
