"""What training and evaluation share: seeding, building a run's model and data loaders from its spec."""
from __future__ import annotations

import ctypes
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidbench import flops
from vidbench.distributed import Ranks, rank_device
from vidbench.errors import InputError
from vidbench.data.dataset import DecodedStore, build_loader, num_classes
from vidbench.plugins import get_method

SPEC_FILE = "spec.json"


def keep_freed_memory() -> None:
    """Stop glibc from returning each freed activation to the OS: with small CPU models, mapping and
    unmapping megabyte buffers every step (page faults, system time) costs more than the convolutions."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    for option in (m_trim_threshold, m_top_pad, m_mmap_threshold):
        libc.mallopt(option, 256 * 2**20)


def progress_bar(batches, desc: str, shown: bool):
    """The batches, with a progress bar on stderr when `shown` and stderr is a terminal (none in logs)."""
    return tqdm(batches, desc=desc, leave=False, file=sys.stderr, disable=None if shown else True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_of(spec: dict) -> torch.device:
    wanted = spec["train"].get("device", "auto")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def build_model(spec: dict, costs: dict | None = None):
    """The run's model (on the CPU, channels-last) with its FLOP cost table: `costs` saved by training, else
    counted anew."""
    data = spec["data"]
    method = get_method(spec["method"])
    model = method.build(spec["model"], backbone=spec["backbone"], num_classes=num_classes(data["prepared"]),
                         num_segments=data["num_segments"])
    model = flops.attach_costs(model, costs) if costs is not None else \
        flops.attach(model, (data["num_segments"], 3, data["input_size"], data["input_size"]))
    # NHWC: a 1.1-1.4x faster epoch of the default backbone on the CPU (README, Training speed), no slower on
    # ResNet-18/50; GPU tensor cores read it without a transpose per convolution
    return model.to(memory_format=torch.channels_last)


def require_pretraining(spec: dict) -> None:
    """A run from the synthetic backbone (its spec has a `pretrain` section) needs `vidbench pretrain` first."""
    path = spec["model"].get("pretrained")
    if "pretrain" in spec and isinstance(path, str) and not Path(path).is_file():
        settings = spec["pretrain"]
        raise InputError(path, "the synthetically pretrained backbone is missing",
                         expected=f"`vidbench pretrain --backbone {spec['backbone']} --out {path} "
                                  f"--images {settings['images']} --steps {settings['steps']}` first (the "
                                  "workflow's pretrain rule runs it)")


def make_loader(spec: dict, split: str, train: bool, batch_size: int, ranks: Ranks = Ranks()):
    """A split's loader; `ranks`: this process's share of each batch in a multi-process run."""
    data = spec["data"]
    return build_loader(data["prepared"], split, train=train, num_segments=data["num_segments"],
                        input_size=data["input_size"], scale_size=data["scale_size"],
                        flip=data["flip"] and train, batch_size=batch_size, workers=data["workers"],
                        seed=spec["seed"], cache=data["cache"], store=decoded_store(data),
                        mean=data["mean"], std=data["std"],
                        device=rank_device(device_of(spec), ranks),  # resized and normalised where it trains
                        rank=ranks.rank, ranks=ranks.world)


def decoded_store(data: dict) -> DecodedStore | None:
    """With `data.shared_cache`, the decoded frames every run of the dataset shares (<prepared>/decoded/)."""
    return DecodedStore(Path(data["prepared"]) / "decoded") if data.get("shared_cache") else None


def load_spec(run_dir) -> dict:
    """The resolved spec a run was trained under (its spec.json)."""
    path = Path(run_dir) / SPEC_FILE
    try:
        spec = json.loads(path.read_text())
    except OSError as err:
        raise InputError(path, f"cannot read the run's spec: {err.strerror}",
                         expected="a run directory written by `vidbench train`") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"malformed JSON: {err.msg}", line=err.lineno) from None
    return checked_spec(spec, path)


SPEC_KEYS = ("dataset", "method", "point", "backbone", "seed", "data", "model", "train", "eval")


def checked_spec(spec, source) -> dict:
    """`spec` when it is a resolved run spec, else an InputError naming `source` and the missing keys."""
    missing = [key for key in SPEC_KEYS if key not in spec] if isinstance(spec, dict) else list(SPEC_KEYS)
    if missing:
        raise InputError(source, f"not a resolved run spec: no {', '.join(missing)}",
                         expected="the spec.json `vidbench train` writes (keys " + ", ".join(SPEC_KEYS) + ")")
    return spec


def spec_from_args(args) -> dict:
    """A run spec from `--spec JSON`, or resolved from `--config` and the run's coordinates."""
    if args.spec:
        try:
            spec = json.loads(args.spec)
        except json.JSONDecodeError as err:
            raise InputError("--spec", f"malformed JSON: {err.msg} at character {err.pos}") from None
        return checked_spec(spec, "--spec")
    missing = [f"--{name}" for name in ("dataset", "method") if getattr(args, name) is None]
    if missing:
        raise InputError(" and ".join(missing), "required without --spec", expected="--dataset NAME --method NAME")
    from vidbench.config import load_config, resolve_run

    config = load_config(args.config)
    return resolve_run(config, args.dataset, args.method, args.point, args.backbone, args.seed)


def add_spec_arguments(parser) -> None:
    parser.add_argument("--spec", help="fully resolved run spec as JSON (what the workflow passes); "
                        "without it the run is resolved from --config and the options below")
    parser.add_argument("--config", default="workflow/config/default.yaml", help="workflow config to resolve from")
    parser.add_argument("--dataset", help="a dataset of the config (required without --spec)")
    parser.add_argument("--method", help="a method directory under methods/ (required without --spec)")
    parser.add_argument("--point", default="default", help="operating point of the method")
    parser.add_argument("--backbone", default="resnet_tiny", help="backbone (resnet_tiny, resnet18, resnet50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run")
