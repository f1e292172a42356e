"""Distinct GPUs for the jobs that run at once on one machine.

`snakemake --cores N --resources gpu=K` only counts GPUs: it starts jobs while their `gpu` resources sum
to at most K, but it does not say which GPU a job may use (Snakemake 9 has no such mechanism), so every
job would start on GPU 0. `claim_devices(count)` picks `count` GPUs that no other process holds and sets
CUDA_VISIBLE_DEVICES to them, for this process and the processes it starts (torchrun's ranks).

The mechanism: one lock file per GPU, `<lock dir>/<host>-gpu-<id>/.lock`, held with `fcntl.flock` (the
`RunLock` of vidbench.rundir) for as long as the claim lives. A claimant tries every GPU without
blocking and takes `count` free ones, or none at all (holding some while waiting for the rest could
deadlock two claimants), then tries again every `poll_interval` seconds. The kernel drops a process's
locks when it dies, so a killed job never keeps a GPU.

The GPUs to choose from: $VIDBENCH_DEVICES (ids separated by commas: a simulated list for tests, or a
user's own choice), else the ones CUDA_VISIBLE_DEVICES lists, else every GPU torch counts. The lock dir:
$VIDBENCH_DEVICE_LOCKS, else a per-user folder in the system temp dir (so on one machine, not shared).

Under Slurm (SLURM_JOB_ID set) nothing is claimed: Slurm already gives each job its own GPUs, and each
job sees them as 0, 1, ..., so lock files named by those ids would collide between jobs on one node.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vidbench.errors import HarnessError
from vidbench.rundir import RunLock, RunLocked

DEVICES_ENV = "VIDBENCH_DEVICES"
LOCKS_ENV = "VIDBENCH_DEVICE_LOCKS"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
POLL_SECONDS = 0.5


class NotEnoughDevices(HarnessError):
    """A job asks for more GPUs than the machine has: no wait would help."""

    exit_code = 2


class DevicesBusy(HarnessError):
    """Other processes held the GPUs until the timeout."""


class DeviceClaim:
    """The GPUs this process holds (`devices`, ids as CUDA_VISIBLE_DEVICES names them) until `release`
    or the end of a `with` block; CUDA_VISIBLE_DEVICES gets its previous value back then.

    Keep a reference for as long as the GPUs are in use: the locks go with the object."""

    def __init__(self, devices: list[str], locks: list[RunLock] = ()):
        self.devices = list(devices)
        self.locks = list(locks)
        self.previous_visible = os.environ.get(VISIBLE_ENV)
        if self.locks:
            os.environ[VISIBLE_ENV] = ",".join(self.devices)

    def release(self) -> None:
        if not self.locks:
            return
        for lock in self.locks:
            lock.__exit__(None, None, None)
        self.locks = []
        if self.previous_visible is None:
            os.environ.pop(VISIBLE_ENV, None)
        else:
            os.environ[VISIBLE_ENV] = self.previous_visible

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def claim_devices(count: int, devices: list[str] | None = None, lock_dir: Path | None = None,
                  timeout: float | None = None, poll_interval: float = POLL_SECONDS) -> DeviceClaim:
    """Claim `count` GPUs no other process holds, waiting for them (up to `timeout` seconds; None: no
    limit), and set CUDA_VISIBLE_DEVICES to them. Use as `with claim_devices(n) as claim:` or keep the
    returned claim and call `claim.release()`.

    Call it before CUDA is initialised in this process (before the first tensor or model goes to a
    GPU): the CUDA runtime reads CUDA_VISIBLE_DEVICES once, when it starts.

    `devices`: the ids to choose from (default: $VIDBENCH_DEVICES, CUDA_VISIBLE_DEVICES, or every GPU).
    With `count` 0 or no GPUs it does nothing; under Slurm it claims nothing and returns Slurm's GPUs."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return DeviceClaim([])
    candidates = list(devices) if devices is not None else default_devices()
    if os.environ.get("SLURM_JOB_ID") or not candidates:
        return DeviceClaim(candidates)
    if count > len(candidates):
        raise NotEnoughDevices(f"the job asks for {count} GPUs but this machine has {len(candidates)} "
                               f"({', '.join(candidates)}); lower resources.gpu (or train.gpus)")
    _require_cuda_uninitialised()
    locks_root = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    return _wait_for(count, candidates, locks_root, timeout, poll_interval)


def claim_for(spec: dict, count: int = 1) -> DeviceClaim:
    """`count` GPUs for a job (train, evaluate, measure) of the run `spec` where it may run on CUDA (device
    auto or cuda); none where its device is explicit (cpu, cuda:N, mps)."""
    if spec["train"].get("device", "auto") not in ("auto", "cuda"):
        return DeviceClaim([])
    return claim_devices(count)


def default_devices() -> list[str]:
    """The GPU ids to choose from: $VIDBENCH_DEVICES, else CUDA_VISIBLE_DEVICES, else every GPU."""
    if os.environ.get(DEVICES_ENV, "").strip():
        return parse_device_list(os.environ[DEVICES_ENV])
    if VISIBLE_ENV in os.environ:
        return parse_device_list(os.environ[VISIBLE_ENV])
    return [str(i) for i in range(_count_gpus())]


def parse_device_list(text: str) -> list[str]:
    """'0, 1,2' -> ['0', '1', '2']. As CUDA reads it, the list ends at the first negative id ('-1': none)."""
    ids = []
    for item in (part.strip() for part in text.split(",")):
        if not item or item.startswith("-"):
            break
        ids.append(item)
    return ids


def default_lock_dir() -> Path:
    if os.environ.get(LOCKS_ENV):
        return Path(os.environ[LOCKS_ENV])
    return Path(tempfile.gettempdir()) / f"vidbench-devices-{os.getuid()}"


def _count_gpus() -> int:
    """How many GPUs there are, without initialising CUDA in this process."""
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    # torch.cuda.device_count() asks NVML first, which leaves CUDA alone, but without NVML it falls back to
    # the CUDA runtime, which would then ignore the CUDA_VISIBLE_DEVICES we set; so count in a child then.
    nvml_count = getattr(torch.cuda, "_device_count_nvml", lambda: -1)()
    if nvml_count >= 0:
        return nvml_count
    counted = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                             capture_output=True, text=True, check=False)
    return int(counted.stdout.strip()) if counted.returncode == 0 and counted.stdout.strip().isdigit() else 0


def _require_cuda_uninitialised() -> None:
    torch = sys.modules.get("torch")  # CUDA cannot have started in a process that never imported torch
    if torch is not None and torch.cuda.is_initialized():
        raise HarnessError("claim_devices ran after CUDA was initialised: CUDA_VISIBLE_DEVICES would not "
                           "apply to this process; claim the GPUs before any tensor goes to one")


def _lock_of(lock_dir: Path, device: str) -> RunLock:
    # the host in the name keeps machines apart should $VIDBENCH_DEVICE_LOCKS be on a shared file system
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", device)  # GPU/MIG UUIDs can hold '/'
    return RunLock(lock_dir / f"{socket.gethostname()}-gpu-{safe_id}")


def _try_claim(count: int, candidates: list[str], lock_dir: Path) -> tuple[list[str], list[RunLock], list[str]]:
    """(claimed ids, their locks, busy ids): `count` free GPUs, or none claimed if fewer are free."""
    claimed, locks, busy = [], [], []
    for device in candidates:
        if len(claimed) == count:
            break
        lock = _lock_of(lock_dir, device)
        try:
            locks.append(lock.__enter__())
            claimed.append(device)
        except RunLocked:
            busy.append(device)
    if len(claimed) < count:
        for lock in locks:
            lock.__exit__(None, None, None)
        return [], [], busy
    return claimed, locks, busy


def _wait_for(count: int, candidates: list[str], lock_dir: Path, timeout: float | None,
              poll_interval: float) -> DeviceClaim:
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while True:
        claimed, locks, busy = _try_claim(count, candidates, lock_dir)
        if claimed:
            return DeviceClaim(claimed, locks)
        if deadline is not None and time.monotonic() >= deadline:
            raise DevicesBusy(f"no {count} free GPUs of {', '.join(candidates)} after {timeout:g} s; busy: "
                              f"{_holders(lock_dir, busy)} (locks in {lock_dir})")
        if not announced:  # a job log then says why the job has not started yet
            print(f"vidbench: waiting for {count} free GPUs of {', '.join(candidates)}; busy: "
                  f"{_holders(lock_dir, busy)}", file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll_interval)


def _holders(lock_dir: Path, busy: list[str]) -> str:
    """'0 (pid 12 on host since ...), 1 (...)': who holds each busy GPU, as its lock file says."""
    described = []
    for device in busy:
        path = _lock_of(lock_dir, device).path
        try:
            holder = path.read_text().strip()
        except OSError:
            holder = ""
        described.append(f"{device} ({holder or 'another process'})")
    return ", ".join(described)
