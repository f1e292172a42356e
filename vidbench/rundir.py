"""A run directory a trainer can trust: one writer at a time, checkpoints that match the run's config and
survive corruption, and a clean stop when the cluster asks for one.

- `RunLock`: an advisory lock (flock) on `<run>/.lock`, held while a trainer writes the run; the kernel
  drops it when the process dies, so a killed job never leaves a stale lock.
- `fingerprint(spec)`: the parts of a resolved spec that change what training computes. A checkpoint
  records it; resuming under a different one stops and names the keys that differ.
- `Checkpoints`: the last good state is kept as `checkpoint.pt`, the one before as `checkpoint.prev.pt`;
  a file that cannot be read is moved aside (`*.corrupt`) and training resumes from the older one, or
  from the start, saying so. A file that holds more than tensors and plain data is refused.
- `StopRequest`: SIGTERM (time limit, preemption) and SIGUSR1 (Slurm's `--signal`) set a flag that the
  training loop reads between steps; it then checkpoints and exits with `PREEMPTED_EXIT`.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from vidbench import io as vio
from vidbench.errors import HarnessError, InputError

LOCK = ".lock"
CHECKPOINT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
FINAL, BEST, LOG = "model.pt", "model_best.pt", "log.csv"  # the trained run, its best epoch, one row an epoch
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped on request, rerun to continue

# resolved spec keys that do not change what training computes: where files live, how fast it runs
IGNORED = {("title",), ("paper_label",), ("run_dir",), ("results_dir",), ("eval",), ("requires",),
           ("data", "root"), ("data", "workers"), ("data", "cache"), ("data", "shared_cache"),
           ("train", "threads"), ("train", "device"), ("train", "max_unreadable"), ("train", "eval_every")}


class RunLocked(HarnessError):
    """Another trainer holds the run directory."""


class ConfigChanged(InputError):
    """A checkpoint was written under another config than the one now asked for."""


class Preempted(HarnessError):
    """Training stopped on a signal after writing a checkpoint; rerunning continues from it."""

    exit_code = PREEMPTED_EXIT


def _flatten(value, prefix=()) -> dict[tuple, object]:
    if isinstance(value, dict) and value:
        out = {}
        for key, inner in value.items():
            out.update(_flatten(inner, (*prefix, str(key))))
        return out
    return {prefix: value}


def fingerprint(spec: dict) -> dict[str, object]:
    """{dotted key: value} of everything in `spec` that changes what training computes."""
    flat = _flatten(spec)
    return {".".join(key): value for key, value in sorted(flat.items())
            if not any(key[:len(ignored)] == ignored for ignored in IGNORED) and key[:2] != ("model", "requires")}


def changed_keys(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every fingerprint key whose value differs."""
    missing = object()
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            show = lambda v: "(unset)" if v is missing else json.dumps(v)  # noqa: E731
            lines.append(f"{key}: {show(before)} -> {show(after)}")
    return lines


class RunLock:
    """`with RunLock(run_dir):` holds the run directory for one trainer; a second one stops at once."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLocked(f"{self.path.parent}: another trainer is writing this run ({holder}); wait for it to "
                            "finish or stop it, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        self.handle.close()  # closing releases the lock; the file stays (removing it would race a waiting trainer)
        return False


class Checkpoints:
    """The resumable state of one run: `save` keeps the last two, `load` returns the newest that can be
    read (moving unreadable files aside) and checks its fingerprint."""

    def __init__(self, run_dir, fingerprint: dict):
        self.run_dir = Path(run_dir)
        self.fingerprint = fingerprint

    @property
    def files(self) -> list[Path]:
        return [self.run_dir / CHECKPOINT, self.run_dir / PREVIOUS]

    def save(self, state: dict) -> None:
        """Write the new state beside the current one first, then rotate: a crash at any moment leaves the
        newest complete checkpoint in place (only between the two renames is it the previous file)."""
        current, previous = self.files
        written = current.with_name(f"{current.stem}.next{current.suffix}")
        vio.save_torch({**state, "fingerprint": self.fingerprint}, written)
        if current.exists():
            os.replace(current, previous)
        os.replace(written, current)

    def load(self, map_location="cpu") -> dict | None:
        """The newest readable checkpoint (an unreadable one is moved aside, saying what comes instead), or None."""
        present = [path for path in self.files if path.exists()]
        for i, path in enumerate(present):
            try:
                saved = vio.load_torch(path, map_location)
            except vio.CorruptFile as err:
                aside = path.with_name(f"{path.name}.corrupt")
                os.replace(path, aside)
                instead = f"resuming from {present[i + 1].name}" if i + 1 < len(present) else \
                    "no older checkpoint: training starts over"
                print(f"warning: {err}; moved it to {aside.name}, {instead}", file=sys.stderr)
                continue
            self._check(path, saved)
            return saved
        return None

    def _check(self, path: Path, saved: dict) -> None:
        old = saved.get("fingerprint") if isinstance(saved, dict) else None
        if old is None:
            raise ConfigChanged(path, "checkpoint has no config fingerprint (written by an older vidbench)",
                                expected=f"delete it (and {self.run_dir / PREVIOUS}) to start the run over")
        differences = changed_keys(old, self.fingerprint)
        if differences:
            shown = "; ".join(differences[:8]) + (f"; ... {len(differences) - 8} more" if len(differences) > 8 else "")
            raise ConfigChanged(path, f"checkpoint was trained under another config ({shown})",
                                expected=f"the config it was trained with, or delete {self.run_dir} (or its "
                                "checkpoint*.pt files) to start over under the new one")

    def clear(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


class StopRequest:
    """`with StopRequest() as stop:` catches SIGTERM and SIGUSR1 in the main process; `stop.signal` names
    the first one received (None until then). The previous handlers come back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signal: str | None = None
        self.previous = {}

    def _handle(self, signum, frame):
        self.signal = self.signal or signal.Signals(signum).name

    def __enter__(self):
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False
