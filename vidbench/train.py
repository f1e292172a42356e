"""`vidbench train`: one training loop for every method.

Checkpoints after every epoch, and mid-epoch when SIGTERM or SIGUSR1 asks it to stop (then it exits with
`PREEMPTED_EXIT`); a rerun resumes from the newest checkpoint and reaches the weights an uninterrupted
run reaches. A checkpoint resumes only under the config it was trained with, and one trainer at a time
writes a run (see `vidbench.rundir`). The final `model.pt` is written only when training has finished,
atomically, so Snakemake never sees a half-trained run as done.

`train.amp` trains in mixed precision (bf16, or fp16 with a gradient scaler whose state the checkpoints
keep); `train.gpus` > 1 trains in that many processes under torchrun (see `vidbench.distributed`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidbench import distributed
from vidbench import evaluate as evaluation
from vidbench import io as vio
from vidbench import optim
from vidbench.data.dataset import num_classes
from vidbench.devices import claim_for
from vidbench.distributed import Ranks
from vidbench.engine import (SPEC_FILE, add_spec_arguments, build_model, device_of, keep_freed_memory, make_loader,
                             progress_bar, require_pretraining, seed_everything, spec_from_args)
from vidbench.errors import HarnessError, InputError
from vidbench.flops import count_params
from vidbench.metrics import accuracy
from vidbench.rundir import BEST, CHECKPOINT, FINAL, LOG, Checkpoints, Preempted, RunLock, StopRequest, fingerprint

UNREADABLE = "unreadable.txt"  # every training video that could not be read, with the reason
LOG_FIELDS = ["epoch", "lr", "loss", "top1", "gflops", "seconds", "skipped", "val_top1"]


class TrainingError(HarnessError):
    pass


NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
GROUPS = ("weights", "biases", "norms")
GROUP_ATTRIBUTE = "optimizer_group"  # a method states a parameter's group: setattr(param, GROUP_ATTRIBUTE, "weights")


def param_groups(model, weight_decay: float, bias_lr_mult: float = 1.0) -> list[dict]:
    """The released recipe's groups: weights with weight decay; biases without, at `bias_lr_mult` times
    the learning rate; normalisation layers without either. A parameter's `optimizer_group` attribute,
    where a method sets one, overrides the rule (CGNet's 1-D gate thresholds train as weights)."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False)}
    groups = {name: [] for name in GROUPS}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = getattr(param, GROUP_ATTRIBUTE, None)
        if group is None:
            group = "norms" if id(param) in norm_params else "weights" if param.ndim > 1 else "biases"
        elif group not in GROUPS:
            raise ValueError(f"parameter {name}: {GROUP_ATTRIBUTE} is {group!r}, expected one of {GROUPS}")
        groups[group].append(param)
    return [{"params": groups["weights"], "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": groups["biases"], "weight_decay": 0.0, "lr_mult": bias_lr_mult},
            {"params": groups["norms"], "weight_decay": 0.0, "lr_mult": 1.0}]


def make_optimizer(model, cfg):
    groups = param_groups(model, cfg["weight_decay"], cfg["bias_lr_mult"])
    for group in groups:
        group["lr"] = cfg["lr"] * group["lr_mult"]
    return optim.Optimizer(groups, cfg["optimizer"], cfg["lr"], momentum=cfg["momentum"])


def write_log(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(history)
    vio.write_text(path, buffer.getvalue())


def new_totals() -> dict:
    """What an epoch sums up; a mid-epoch checkpoint keeps it, so the resumed epoch's log row is whole."""
    return {"loss": 0.0, "correct": 0, "flops": 0.0, "videos": 0, "skipped": 0, "unreadable": {}, "batches": 0,
            "seconds": 0.0, "done": False}


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """`train.amp`: the forward pass and loss under autocast in bf16 or fp16; fp16 scales the loss
    (gradient scaler, kept in checkpoints), bf16 has float32's range and needs no scaling."""

    def __init__(self, amp: str = "off", device: torch.device = torch.device("cpu")):
        self.dtype, self.device_type = AMP_DTYPES.get(amp), device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else nullcontext()


def train_epoch(model, loader, optimizer, cfg, device, epoch, progress, totals, stop, precision=None,
                ranks: Ranks = Ranks()):
    """Train on the loader's batches, adding to `totals`; return after the last batch (`done`), or before
    the next step once `stop.signal` is set (in any rank)."""
    model.train()
    started = time.perf_counter()
    bar = progress_bar(loader, f"epoch {epoch + 1}", progress and ranks.writes)
    for clips, labels, skipped in bar:
        step = distributed.agree(ranks, len(labels), bool(stop.signal), device)
        if step.stop:
            break
        totals["batches"] += 1
        totals["skipped"] += skipped
        totals["unreadable"].update((path, reason) for path, reason in skipped.items if path)
        if not step.skip:
            loss, out = train_step(model, clips.to(device, non_blocking=True), labels.to(device, non_blocking=True),
                                   optimizer, cfg, epoch, totals["batches"], precision, step.weight)
            totals["loss"] += loss * len(labels)
            totals["correct"] += (out.logits.argmax(1) == labels.to(out.logits.device)).sum().item()
            totals["flops"] += out.flops.sum().item()
            totals["videos"] += len(labels)
            bar.set_postfix(loss=f"{loss:.3f}")
    else:
        totals["done"] = True
    totals["seconds"] += time.perf_counter() - started
    return totals


def train_step(model, clips, labels, optimizer, cfg, epoch, step, precision=None, weight=1.0):
    """One optimisation step: cross entropy plus the method's own losses (already weighted). `weight`
    scales this process's loss (its share of a multi-process global batch)."""
    precision = precision or Precision()
    with precision.autocast():
        out = model(clips)
        loss = F.cross_entropy(out.logits.float(), labels) + sum(out.losses.values(), torch.zeros((), device=clips.device))
    if not math.isfinite(loss.item()):
        raise TrainingError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step}: training diverged "
                            f"(lower train.lr, now {cfg['lr']}); the last good checkpoint is kept")
    optimizer.zero_grad(set_to_none=True)
    precision.scaler.scale(loss * weight).backward()
    if cfg.get("clip_grad"):
        precision.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
    precision.scaler.step(optimizer)
    precision.scaler.update()
    return loss.item(), out


def validate(model, loader, device) -> float:
    """Top-1 (%) of the current weights on the validation split (evaluation transform, eval mode), leaving
    every random stream of training as it was (AdaFuse may sample its policy at evaluation)."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        for clips, batch_labels, _ in loader:
            if len(batch_labels):
                logits.append(model(clips.to(device)).logits.float().cpu())
                labels.append(batch_labels)
    model.train(was_training)
    return accuracy(torch.cat(logits), torch.cat(labels))[0] if logits else math.nan


def diverged(loss: float, num_classes: int, factor: float | None) -> str | None:
    """Why an epoch's mean training loss shows a diverged run, or None. Chance level is ln(classes): the
    cross entropy of a uniform guess. A loss far above it means confidently wrong predictions."""
    chance = math.log(max(num_classes, 2))
    if factor is not None and loss > factor * chance:
        return f"mean training loss {loss:.4g} is above {factor:g} x chance level ({chance:.3g} = ln {num_classes})"
    return None


def stop_if_diverged(state: dict, cfg: dict, run_dir: Path) -> None:
    """With train.on_divergence: fail, a recorded divergence ends the run (also when a rerun resumes it)."""
    if state["diverged"] and cfg.get("on_divergence", "fail") == "fail":
        raise TrainingError(f"{run_dir}: training diverged at {state['diverged']}. Lower train.lr (now {cfg['lr']}) "
                            "or set train.on_divergence: flag to keep the run as a flagged result; either change "
                            f"needs {run_dir}/checkpoint*.pt deleted, as they hold the diverged weights")


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


def rng_state() -> dict:
    """Every random stream the training loop draws from in this process (dropout, Gumbel noise, ...)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(spec: dict, run_dir, progress: bool = True) -> dict | None:
    """Train the run (the calling process is one rank of a multi-process run under torchrun); the
    trained result, None in the ranks that do not write."""
    run_dir, ranks = Path(run_dir), Ranks.from_env()
    device = distributed.rank_device(device_of(spec), ranks)
    with RunLock(run_dir) if ranks.writes else nullcontext(), StopRequest() as stop, \
            distributed.process_group(ranks, device):
        return _train(spec, run_dir, progress, stop, ranks, device)


def _train(spec: dict, run_dir: Path, progress: bool, stop: StopRequest, ranks: Ranks, device: torch.device):
    cfg = spec["train"]
    torch.set_num_threads(cfg.get("threads", 1))
    keep_freed_memory()
    checkpoints = Checkpoints(run_dir, fingerprint(spec))
    saved = checkpoints.load(map_location=device)  # before anything is written: a mismatch mixes nothing
    seed_everything(spec["seed"])
    require_pretraining(spec)
    model = build_model(spec).to(device)
    optimizer = make_optimizer(model, cfg)
    precision = Precision(cfg.get("amp", "off"), device)
    loader = make_loader(spec, "train", train=True, batch_size=cfg["batch_size"], ranks=ranks)
    if len(loader.dataset) == 0:
        raise InputError(Path(spec["data"]["prepared"]) / "train.csv", "no training video in the index",
                         expected="at least one readable training video (see report.json beside it)")
    write = ranks.writes
    if write:
        vio.write_json(run_dir / SPEC_FILE, spec)
    state = {"epoch": 0, "history": [], "seconds": 0.0, "skipped": 0, "unreadable": {}, "diverged": None,
             "best": None}
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        precision.scaler.load_state_dict(saved.get("scaler", {}))
        state = {**state, **saved["state"]}
        where = f"epoch {state['epoch'] + 1}, batch {saved['partial'][0]['batches']}" if saved.get("partial") \
            else f"the end of epoch {state['epoch']}"
        if write:
            print(f"resuming {run_dir} from {where}", file=sys.stderr)
        stop_if_diverged(state, cfg, run_dir)
    step_model = distributed.wrap(model, ranks, device, cfg.get("sync_bn", True))
    classes = num_classes(spec["data"]["prepared"])
    every = cfg.get("eval_every", 0)
    val_loader = make_loader(spec, "val", train=False, batch_size=spec["eval"]["batch_size"]) if every and write else None

    def save(**extra):
        """A checkpoint of everything a resume needs; `extra`: a mid-epoch one's per-rank progress."""
        extra = {key: distributed.gather(ranks, value) for key, value in extra.items()}
        if write:
            checkpoints.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scaler": precision.scaler.state_dict(), "state": state, **extra})

    for epoch in range(state["epoch"], cfg["epochs"]):
        epoch_seed = spec["seed"] * 1009 + epoch  # an epoch's draws do not depend on where training resumed
        seed_everything(epoch_seed * ranks.world + ranks.rank)  # dropout and Gumbel noise: a stream per rank
        loader.generator.manual_seed(epoch_seed)  # the epoch's order, frames and crops, whatever the workers
        totals = new_totals()
        if saved is not None and saved.get("partial"):
            totals = saved["partial"][ranks.rank]
            loader.skip(totals["batches"])
            set_rng_state(saved["rng"][ranks.rank])
        saved = None
        optim.step_lr(optimizer, cfg["lr"], epoch, cfg["lr_steps"], cfg["lr_gamma"])
        lr = optimizer.param_groups[0]["lr"]
        totals = train_epoch(step_model, loader, optimizer, cfg, device, epoch, progress, totals, stop, precision,
                             ranks)
        if not totals["done"]:
            save(partial=totals, rng=rng_state())
            raise Preempted(f"{run_dir}: stopped by {stop.signal or 'a signal to another rank'} in epoch {epoch + 1} "
                            f"after batch {totals['batches']}; checkpoint written to {run_dir / CHECKPOINT}: rerun to "
                            "continue from there")
        finish_epoch(state, merge_totals(distributed.gather(ranks, totals)), epoch, lr)
        reason = diverged(state["history"][-1]["loss"], classes, cfg.get("divergence_factor"))
        state["diverged"] = state["diverged"] or (reason and f"epoch {epoch + 1}: {reason}")
        if val_loader is not None and ((epoch + 1) % every == 0 or epoch + 1 == cfg["epochs"]):
            record_validation(state, validate(model, val_loader, device), model, run_dir / BEST)
        save()  # with the divergence recorded: a rerun of a failed run fails again instead of going on
        if write:
            write_log(run_dir / LOG, state["history"])
            print(f"epoch {epoch + 1}/{cfg['epochs']}: " + ", ".join(f"{k} {v}" for k, v in state["history"][-1].items()
                                                                     if k != "epoch"), file=sys.stderr)
        if state["unreadable"] and write:
            vio.write_text(run_dir / UNREADABLE, "".join(f"{p}\t{r}\n" for p, r in sorted(state["unreadable"].items())))
        # after the checkpoint: stopping here loses nothing already trained
        check_unreadable(totals["skipped"], len(loader.dataset), cfg.get("max_unreadable", 0.01),
                         totals["unreadable"], run_dir / UNREADABLE)
        stop_if_diverged(state, cfg, run_dir)
        if any(distributed.gather(ranks, bool(stop.signal))) and epoch + 1 < cfg["epochs"]:
            raise Preempted(f"{run_dir}: stopped by {stop.signal} after epoch {epoch + 1}; checkpoint written to "
                            f"{run_dir / CHECKPOINT}: rerun to continue from there")
    result = {"spec": spec, "model": model.state_dict(), "costs": model.costs, "params": count_params(model),
              "train_time_s": state["seconds"], "skipped": state["skipped"], "unreadable": sorted(state["unreadable"]),
              "history": state["history"], "diverged": state["diverged"], "best": state["best"],
              "amp": cfg.get("amp", "off"), "processes": ranks.world}
    if not write:
        return None
    vio.save_torch(result, run_dir / FINAL)
    checkpoints.clear()
    return result


def merge_totals(ranks_totals: list[dict]) -> dict:
    """One epoch's totals over every rank's (the slowest rank's seconds)."""
    merged = dict(ranks_totals[0], unreadable=dict(ranks_totals[0]["unreadable"]))
    for totals in ranks_totals[1:]:
        for key in ("loss", "correct", "flops", "videos", "skipped"):
            merged[key] += totals[key]
        merged["unreadable"].update(totals["unreadable"])
        merged["seconds"] = max(merged["seconds"], totals["seconds"])
    return merged


def record_validation(state: dict, top1: float, model, best_file: Path) -> None:
    """Log the epoch's validation Top-1; keep the weights of the best epoch so far in `best_file`."""
    row = state["history"][-1]
    row["val_top1"] = round(top1, 2)
    if state["best"] is None or top1 > state["best"]["val_top1"]:
        state["best"] = {"epoch": row["epoch"], "val_top1": row["val_top1"]}
        vio.save_torch({"model": model.state_dict(), **state["best"]}, best_file)


def finish_epoch(state: dict, totals: dict, epoch: int, lr: float) -> None:
    """Add an epoch's totals to the run's state and its row to the history (log.csv)."""
    state["skipped"] += totals["skipped"]
    state["unreadable"].update(totals["unreadable"])
    videos = max(totals["videos"], 1)
    state["history"].append({"epoch": epoch + 1, "lr": lr, "loss": round(totals["loss"] / videos, 5),
                             "top1": round(100 * totals["correct"] / videos, 2),
                             "gflops": round(totals["flops"] / videos / 1e9, 6), "seconds": round(totals["seconds"], 2),
                             "skipped": totals["skipped"]})
    state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + totals["seconds"]


def add_arguments(parser):
    add_spec_arguments(parser)
    parser.add_argument("--out", help="run directory (default: the spec's run_dir)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")
    parser.add_argument("--evaluate", action="store_true",
                        help="then evaluate the trained run into metrics.json, as `vidbench evaluate --run OUT` does "
                             "(the workflow's train rule: one process a run, not two)")


def run(args):
    spec = spec_from_args(args)
    out = args.out or spec["run_dir"]
    processes = spec["train"].get("gpus", 1)
    if Ranks.from_env().many:  # a rank: the launcher holds the job's GPUs
        train(spec, out, progress=not args.no_progress)
        return 0
    with claim_for(spec, processes):
        if processes > 1:
            launch(spec, out, processes, progress=not args.no_progress)
        else:
            train(spec, out, progress=not args.no_progress)
        if args.evaluate:
            evaluation.report(out, progress=not args.no_progress)
    return 0


def launch(spec: dict, out: str, processes: int, progress: bool) -> None:
    """Train in `processes` ranks; a stop on a signal exits with `PREEMPTED_EXIT`."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        signalled = distributed.launch(json.dumps(spec), str(out), processes, progress)
    except ChildFailedError as err:
        raise TrainingError(f"{out}: a training process failed ({err.get_first_failure()[1].message}); its error "
                            "is printed above") from None
    if signalled:
        raise Preempted(f"{out}: the ranks stopped on {signalled}; checkpoint written to {Path(out) / CHECKPOINT}: "
                        "rerun to continue from there")
