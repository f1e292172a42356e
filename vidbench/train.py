"""`vidbench train`: one training loop for every method.

Checkpoints after every epoch and resumes from the last one when rerun; the final `model.pt` is written
only when training has finished, atomically, so Snakemake never sees a half-trained run as done.
"""
from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vidbench import io as vio
from vidbench.engine import (SPEC_FILE, add_spec_arguments, build_model, device_of, keep_freed_memory, make_loader,
                             seed_everything, spec_from_args)
from vidbench.flops import count_params

CHECKPOINT, FINAL, LOG = "checkpoint.pt", "model.pt", "log.csv"
UNREADABLE = "unreadable.txt"  # every training video that could not be read, with the reason
LOG_FIELDS = ["epoch", "lr", "loss", "top1", "gflops", "seconds", "skipped"]


class TrainingError(RuntimeError):
    pass


NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def param_groups(model, weight_decay: float, bias_lr_mult: float = 1.0) -> list[dict]:
    """The released recipe's groups: weights with weight decay; biases without, at `bias_lr_mult` times
    the learning rate; normalisation layers without either."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False)}
    weights, biases, norms = [], [], []
    for param in model.parameters():
        if param.requires_grad:
            (norms if id(param) in norm_params else weights if param.ndim > 1 else biases).append(param)
    return [{"params": weights, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": biases, "weight_decay": 0.0, "lr_mult": bias_lr_mult},
            {"params": norms, "weight_decay": 0.0, "lr_mult": 1.0}]


def make_optimizer(model, cfg):
    groups = param_groups(model, cfg["weight_decay"], cfg["bias_lr_mult"])
    for group in groups:
        group["lr"] = cfg["lr"] * group["lr_mult"]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"])
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg["optimizer"]](groups, lr=cfg["lr"])


def write_log(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(history)
    vio.write_text(path, buffer.getvalue())


def train_epoch(model, loader, optimizer, cfg, device, epoch, progress):
    model.train()
    totals = {"loss": 0.0, "correct": 0, "flops": 0.0, "videos": 0, "skipped": 0, "unreadable": {}}
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, file=sys.stderr,
               disable=None if progress else True)  # None: a bar on a terminal, none in log files
    for step, (clips, labels, skipped) in enumerate(bar):
        totals["skipped"] += skipped
        totals["unreadable"].update((path, reason) for path, reason in skipped.items if path)
        if len(labels) == 0:
            continue
        clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        out = model(clips)
        loss = F.cross_entropy(out.logits, labels) + sum(out.losses.values(), torch.zeros((), device=device))
        if not math.isfinite(loss.item()):
            raise TrainingError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: training diverged "
                                f"(try a lower lr); the last good checkpoint is kept")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.get("clip_grad"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
        optimizer.step()
        totals["loss"] += loss.item() * len(labels)
        totals["correct"] += (out.logits.argmax(1) == labels).sum().item()
        totals["flops"] += out.flops.sum().item()
        totals["videos"] += len(labels)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return totals


def check_unreadable(skipped: int, dataset_size: int, limit: float, files: dict | None = None,
                     listing: Path | None = None, shown: int = 20):
    """Stop when more than `limit` of the training videos were unreadable, naming them ({path: reason})."""
    if skipped > limit * dataset_size:
        files = files or {}
        lines = [f"  {path} ({reason})" for path, reason in sorted(files.items())[:shown]]
        if len(files) > shown:
            lines.append(f"  ... {len(files) - shown} more" + (f", all in {listing}" if listing else ""))
        raise TrainingError(f"{skipped} of {dataset_size} training videos were unreadable (more than {limit:.0%}); "
                            "the last epoch's checkpoint is kept. Fix or remove them, run `vidbench prepare` "
                            "again and rerun" + (":\n" + "\n".join(lines) if lines else ""))


def train(spec: dict, run_dir, progress: bool = True) -> dict:
    run_dir = Path(run_dir)
    cfg = spec["train"]
    torch.set_num_threads(cfg.get("threads", 1))
    keep_freed_memory()
    vio.write_json(run_dir / SPEC_FILE, spec)
    seed_everything(spec["seed"])
    device = device_of(spec)
    model = build_model(spec).to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg["lr_steps"], cfg["lr_gamma"])
    loader = make_loader(spec, "train", train=True, batch_size=cfg["batch_size"])
    state = {"epoch": 0, "history": [], "seconds": 0.0, "skipped": 0, "unreadable": {}}
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists():
        saved = vio.load_torch(checkpoint, map_location=device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = {"unreadable": {}, **saved["state"]}
        print(f"resuming {run_dir} after epoch {state['epoch']}", file=sys.stderr)
    for epoch in range(state["epoch"], cfg["epochs"]):
        epoch_seed = spec["seed"] * 1009 + epoch  # an epoch's draws do not depend on where training resumed
        seed_everything(epoch_seed)
        loader.generator.manual_seed(epoch_seed)  # the epoch's order, frames and crops, whatever the workers
        started = time.perf_counter()
        totals = train_epoch(model, loader, optimizer, cfg, device, epoch, progress)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        seconds = time.perf_counter() - started
        state["skipped"] += totals["skipped"]
        state["unreadable"].update(totals["unreadable"])
        videos = max(totals["videos"], 1)
        state["history"].append({"epoch": epoch + 1, "lr": lr, "loss": round(totals["loss"] / videos, 5),
                                 "top1": round(100 * totals["correct"] / videos, 2),
                                 "gflops": round(totals["flops"] / videos / 1e9, 6), "seconds": round(seconds, 2),
                                 "skipped": totals["skipped"]})
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + seconds
        vio.save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state}, checkpoint)
        write_log(run_dir / LOG, state["history"])
        print(f"epoch {epoch + 1}/{cfg['epochs']}: " + ", ".join(f"{k} {v}" for k, v in state["history"][-1].items()
                                                                 if k != "epoch"), file=sys.stderr)
        if state["unreadable"]:
            vio.write_text(run_dir / UNREADABLE, "".join(f"{p}\t{r}\n" for p, r in sorted(state["unreadable"].items())))
        # after the checkpoint: stopping here loses nothing already trained
        check_unreadable(totals["skipped"], len(loader.dataset), cfg.get("max_unreadable", 0.01),
                         totals["unreadable"], run_dir / UNREADABLE)
    result = {"spec": spec, "model": model.state_dict(), "costs": model.costs, "params": count_params(model),
              "train_time_s": state["seconds"], "skipped": state["skipped"], "unreadable": sorted(state["unreadable"]),
              "history": state["history"]}
    vio.save_torch(result, run_dir / FINAL)
    checkpoint.unlink(missing_ok=True)
    return result


def add_arguments(parser):
    add_spec_arguments(parser)
    parser.add_argument("--out", help="run directory (default: the spec's run_dir)")
    parser.add_argument("--no-progress", action="store_true")


def run(args):
    spec = spec_from_args(args)
    train(spec, args.out or spec["run_dir"], progress=not args.no_progress)
