"""Atomic file writes: a crash never leaves a half-written output that Snakemake would take as done."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


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
