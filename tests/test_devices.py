"""GPU assignment by slot locks (vidbench.devices) on a simulated 4-GPU machine: VIDBENCH_DEVICES=0,1,2,3
and a lock dir per test. Concurrent jobs are child processes, sequenced by their output lines and stdin
(no sleeps): a holder prints what it claimed, then keeps it until the test writes a line to it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from vidbench import devices as dev

# A job: claim COUNT GPUs, print them and the CUDA_VISIBLE_DEVICES its own child sees, hold until stdin has a line.
HOLDER = """
import os, subprocess, sys
from vidbench.devices import claim_devices
with claim_devices(int(sys.argv[1]), timeout=20, poll_interval=0.02) as claim:
    seen = subprocess.run([sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    print(",".join(claim.devices), seen, flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A simulated 4-GPU machine outside Slurm; returns the lock dir."""
    lock_dir = tmp_path / "locks"
    monkeypatch.setenv(dev.DEVICES_ENV, "0,1,2,3")
    monkeypatch.setenv(dev.LOCKS_ENV, str(lock_dir))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(dev.VISIBLE_ENV, raising=False)
    return lock_dir


@pytest.fixture
def start_job(machine):
    """start_job(count) -> a running holder process; every one still running is killed at the end."""
    jobs = []

    def start(count):
        job = subprocess.Popen([sys.executable, "-c", HOLDER, str(count)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        jobs.append(job)
        return job

    yield start
    for job in jobs:
        job.kill()
        job.wait()


def claimed_by(job) -> list[str]:
    """The GPUs a holder claimed (after checking its child saw exactly those)."""
    line = job.stdout.readline().split()
    assert len(line) == 2, f"holder printed {line!r}; stderr: {job.stderr.read() if job.poll() is not None else ''}"
    claimed, seen_by_child = line
    assert seen_by_child == claimed
    return claimed.split(",")


def release(job) -> None:
    job.stdin.write("\n")
    job.stdin.flush()
    assert job.wait(timeout=20) == 0


def wait_until_waiting(job) -> None:
    """Block until the job says it found too few free GPUs and waits."""
    for line in job.stderr:
        if line.startswith("vidbench: waiting for"):
            return
    pytest.fail(f"job ended without waiting (exit {job.wait()})")


def test_two_concurrent_jobs_get_disjoint_devices(start_job):
    first, second = start_job(2), start_job(2)
    first_devices, second_devices = claimed_by(first), claimed_by(second)
    assert len(first_devices) == len(second_devices) == 2
    assert set(first_devices).isdisjoint(second_devices)
    assert set(first_devices) | set(second_devices) == {"0", "1", "2", "3"}


def test_third_job_waits_until_one_releases_then_gets_its_devices(start_job):
    first, second = start_job(2), start_job(2)
    first_devices, second_devices = claimed_by(first), claimed_by(second)
    third = start_job(2)
    wait_until_waiting(third)
    release(first)
    assert claimed_by(third) == first_devices
    assert set(second_devices).isdisjoint(first_devices)


def test_killed_holder_frees_its_devices(start_job, machine):
    holder = start_job(4)
    assert claimed_by(holder) == ["0", "1", "2", "3"]
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with dev.claim_devices(4, timeout=0) as claim:
        assert claim.devices == ["0", "1", "2", "3"]


def test_child_process_sees_the_claimed_devices_and_release_restores_the_variable(machine, monkeypatch):
    monkeypatch.setenv(dev.VISIBLE_ENV, "0,1,2,3")
    monkeypatch.delenv(dev.DEVICES_ENV)  # the devices come from CUDA_VISIBLE_DEVICES now
    with dev.claim_devices(2, timeout=0) as claim:
        seen = subprocess.run([sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert seen == ",".join(claim.devices) == "0,1"
    assert os.environ[dev.VISIBLE_ENV] == "0,1,2,3"


def test_timeout_names_the_busy_devices_and_their_holders(machine):
    with dev.claim_devices(3, timeout=0):
        with pytest.raises(dev.DevicesBusy, match=r"no 2 free GPUs of 0, 1, 2, 3 after 0 s; busy: 0 \(pid \d+"):
            dev.claim_devices(2, timeout=0)
        with dev.claim_devices(1, timeout=0) as last:  # the one left is still free, alone
            assert last.devices == ["3"]


def test_more_devices_than_the_machine_has_is_an_error(machine):
    with pytest.raises(dev.NotEnoughDevices, match="asks for 5 GPUs but this machine has 4 "):
        dev.claim_devices(5)
    assert dev.NotEnoughDevices.exit_code == 2
    with pytest.raises(ValueError):
        dev.claim_devices(-1)


def test_slurm_job_claims_nothing(machine, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.delenv(dev.DEVICES_ENV)
    monkeypatch.setenv(dev.VISIBLE_ENV, "0")  # two Slurm jobs on one node each see their own GPU as 0
    first, second = dev.claim_devices(1, timeout=0), dev.claim_devices(1, timeout=0)
    assert first.devices == second.devices == ["0"]
    assert os.environ[dev.VISIBLE_ENV] == "0"
    assert not machine.exists()  # no lock file written


def test_nothing_to_claim_is_a_no_op(machine, monkeypatch):
    assert dev.claim_devices(0).devices == []
    assert dev.VISIBLE_ENV not in os.environ
    monkeypatch.delenv(dev.DEVICES_ENV)
    monkeypatch.setenv(dev.VISIBLE_ENV, "-1")  # GPUs hidden: a CPU run
    assert dev.claim_devices(1, timeout=0).devices == []
    assert os.environ[dev.VISIBLE_ENV] == "-1"
    assert not machine.exists()


def test_device_list_sources_and_parsing(machine, monkeypatch, tmp_path):
    monkeypatch.setenv(dev.VISIBLE_ENV, "5,6")
    assert dev.default_devices() == ["0", "1", "2", "3"]  # the explicit list wins
    monkeypatch.setenv(dev.DEVICES_ENV, " ")
    assert dev.default_devices() == ["5", "6"]
    assert dev.parse_device_list(" 2, 3 ,-1,4") == ["2", "3"]  # CUDA stops at the first negative id
    assert dev.parse_device_list("") == []
    assert dev.default_lock_dir() == machine
    monkeypatch.delenv(dev.LOCKS_ENV)
    assert dev.default_lock_dir().name == f"vidbench-devices-{os.getuid()}"
    with dev.claim_devices(1, devices=["GPU-ab/1"], lock_dir=tmp_path / "other", timeout=0) as claim:
        assert claim.devices == ["GPU-ab/1"] and os.environ[dev.VISIBLE_ENV] == "GPU-ab/1"


def test_claiming_after_cuda_started_is_refused(machine, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(dev.HarnessError, match="after CUDA was initialised"):
        dev.claim_devices(1, timeout=0)


def test_jobs_of_runs_that_may_use_cuda_claim_their_gpus(machine, train_spec):
    train_spec["train"]["device"] = "auto"
    with dev.claim_for(train_spec, 2) as claim:
        assert claim.devices == ["0", "1"] and os.environ[dev.VISIBLE_ENV] == "0,1"
        with dev.claim_for(train_spec, 1) as second:
            assert second.devices == ["2"]
    train_spec["train"]["device"] = "cpu"
    with dev.claim_for(train_spec, 2) as claim:
        assert claim.devices == [] and dev.VISIBLE_ENV not in os.environ
