"""Atomic file writes (a crash never leaves a half-written output that Snakemake would take as done) and
safe reads of the torch files a run writes (tensors and plain data only: loading never runs code)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from vidbench.errors import InputError


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> None:
    _atomic(path, lambda handle: handle.write(text.encode()))


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_torch(obj, path) -> None:
    import torch  # here, so that the data commands (synth, prepare, extract) start without torch

    _atomic(path, lambda handle: torch.save(obj, handle))


class UnreadableFile(InputError):
    """A torch file that cannot be loaded safely: truncated, corrupt, or holding more than tensors and plain data."""


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
        raise UnreadableFile(path, f"refused to load: it holds more than tensors and plain data ({reason})",
                             expected="a file written by vidbench") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise UnreadableFile(path, f"cannot read it ({_first_line(str(err)) or type(err).__name__}): truncated or "
                             "corrupt", expected="a complete file written by vidbench") from None


def _first_line(text: str) -> str:
    """The first sentence of torch's multi-paragraph error texts."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line.split(". ")[0].rstrip(".")
