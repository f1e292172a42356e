"""Atomic file writes (a crash never leaves a half-written output that Snakemake would take as done) and
safe reads of the torch files a run writes (tensors and plain data only: loading never runs code)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml

from vidbench.errors import InputError, OutputError


def load_yaml(text: str):
    """yaml.safe_load, through libyaml where PyYAML has it (ten times faster: every job reads the
    method manifests and the schema)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (changing it races other threads)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _atomic(path, write, sync: bool = True):
    """Write through a temporary file renamed into place; an OSError (disk full, read-only folder) leaves
    nothing behind and becomes an OutputError naming the file. `sync=False` skips the fsync: for files
    that can be made again (a crash leaves the old file or none, never a torn one, but maybe an empty one)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: results should follow the umask like any file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(path, f"cannot write it: {err.strerror or err}") from None
        raise


def write_bytes(path, write, sync: bool = True) -> None:
    """Atomically write what `write(handle)` writes to a binary file handle (see `_atomic` for `sync`)."""
    _atomic(path, write, sync)


def write_text(path, text: str) -> None:
    _atomic(path, lambda handle: handle.write(text.encode()))


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_torch(obj, path) -> None:
    import torch  # here, so that the data commands (synth, prepare, extract) start without torch

    _atomic(path, lambda handle: torch.save(obj, handle))


class UnreadableFile(InputError):
    """A torch file that cannot be loaded safely."""


class RefusedFile(UnreadableFile):
    """A torch file holding more than tensors and plain data (a pickled object, code): never loaded."""


class CorruptFile(UnreadableFile):
    """A torch file that is truncated or damaged."""


def load_torch(path, map_location="cpu"):
    """A file written by `save_torch`, loaded with `weights_only=True`: tensors, numbers, strings and
    containers of them. Anything else (a pickled object, code) is refused, naming the file."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _first_line(str(err).split("trusted source.")[-1].split("WeightsUnpickler error:")[-1])
        raise RefusedFile(path, f"refused to load: it holds more than tensors and plain data ({reason})",
                             expected="a file written by vidbench") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise CorruptFile(path, f"cannot read it ({_first_line(str(err)) or type(err).__name__}): truncated or "
                             "corrupt", expected="a complete file written by vidbench") from None


def _first_line(text: str) -> str:
    """The first sentence of torch's multi-paragraph error texts."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line.split(". ")[0].rstrip(".")
