"""`vidbench evaluate`: one evaluator for every method; writes the run's metrics.json."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from vidbench import io as vio
from vidbench.devices import claim_for
from vidbench.data.dataset import Skipped
from vidbench.engine import (SPEC_FILE, build_model, device_of, keep_freed_memory, load_spec, make_loader, progress_bar,
                             seed_everything)
from vidbench.errors import InputError
from vidbench.metrics import accuracy
from vidbench.plugins import get_method
from vidbench.rundir import FINAL, ConfigChanged, changed_keys, fingerprint
from vidbench.sparse import set_sparse_evaluation

METRICS = "metrics.json"


def collect(model, loader, device, progress) -> tuple[dict, int]:
    """Per-video logits, labels, FLOPs and statistics over the whole split (concatenated on the CPU), and the
    number of unreadable videos (a `Skipped`: an int whose `items` name them)."""
    parts, files = {}, []
    with torch.no_grad():
        for clips, labels, skipped in progress_bar(loader, "evaluate", progress):
            files += skipped.items
            if len(labels) == 0:
                continue
            out = model(clips.to(device))
            batch = {"logits": out.logits, "labels": labels, "flops": out.flops,
                     **{f"stats.{name}": value for name, value in out.stats.items()}}
            for name, value in batch.items():
                parts.setdefault(name, []).append(value.detach().float().cpu())
    return {name: torch.cat(values) for name, values in parts.items()}, Skipped(files)


def environment(device) -> dict:
    packages = {name: _version(name) for name in ("torch", "av", "fvcore", "numpy", "snakemake")}
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "git_commit": git_commit(Path(__file__).parent)}


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(folder: Path) -> str | None:
    """The commit checked out where `folder` lies (None outside a git checkout, or without git)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=folder).stdout.strip() or None
    except OSError:
        return None


def run_status(trained: dict, logits: torch.Tensor, labels: torch.Tensor, share: float = 0.95) -> str:
    """"ok", or why the run must not pass as a result: its training diverged (flagged, not stopped), or the
    model is degenerate (one class predicted for `share` of the videos of a split that is not one class)."""
    if trained.get("diverged"):
        return f"diverged: {trained['diverged']}"
    predicted = torch.bincount(logits.argmax(1))
    top, true_top = predicted.max().item() / len(labels), torch.bincount(labels).max().item() / len(labels)
    if top >= share and true_top < 0.5:     # one video is one class: never degenerate
        return (f"degenerate: class {predicted.argmax().item()} predicted for {top:.0%} of the validation videos "
                f"(the most frequent class is {true_top:.0%} of them)")
    return "ok"


BEST_NOTE = ("Top-1 on the validation split at the epoch where it peaked during training (train.eval_every): "
             "optimistic, since the validation set chose the epoch; it is what the released AdaFuse code printed "
             "as 'Best Prec@1'. `top1` is the final epoch's.")


def best_epoch(trained: dict) -> dict | None:
    """The best validation epoch recorded during training, with what its figure means; None without validation."""
    best = trained.get("best")
    return {"epoch": best["epoch"], "top1": best["val_top1"], "note": BEST_NOTE} if best else None


def load_trained(run_dir: Path, spec: dict) -> dict:
    """The trained run, checked against the spec.json it is evaluated under."""
    trained = vio.load_torch(run_dir / FINAL)
    differences = changed_keys(fingerprint(trained["spec"]), fingerprint(spec))
    if differences:
        raise ConfigChanged(run_dir / SPEC_FILE, f"does not match the config {FINAL} was trained with "
                            f"({'; '.join(differences[:8])})", expected=f"the spec of {run_dir / FINAL}, or train again")
    return trained


def evaluate(run_dir, progress: bool = True) -> dict:
    run_dir = Path(run_dir)
    spec = load_spec(run_dir)
    method = get_method(spec["method"])
    torch.set_num_threads(spec["train"]["threads"])
    keep_freed_memory()
    seed_everything(spec["seed"])
    device = device_of(spec)
    trained = load_trained(run_dir, spec)
    model = build_model(spec, trained["costs"])
    model.load_state_dict(trained["model"])
    model.to(device).eval()
    sparse = set_sparse_evaluation(model, spec["eval"]["execution"] == "sparse")
    execution = "sparse" if sparse else "masked"
    loader = make_loader(spec, "val", train=False, batch_size=spec["eval"]["batch_size"])
    outputs, skipped = collect(model, loader, device, progress)
    if not outputs:
        raise InputError(Path(spec["data"]["prepared"]) / "val.csv", "no readable validation video",
                         expected="at least one readable validation video (see report.json beside it)")
    top1, top5 = accuracy(outputs["logits"], outputs["labels"])
    stats = {name.removeprefix("stats."): value.mean(0).tolist() for name, value in outputs.items()
             if name.startswith("stats.")}
    metrics = {
        "run": {key: spec[key] for key in ("dataset", "method", "point", "backbone", "seed")},
        "title": method.title, "paper_label": method.paper_label,
        "status": run_status(trained, outputs["logits"], outputs["labels"].long()),
        "top1": top1, "top5": top5, "execution": execution, "epochs": len(trained["history"]),
        "training": {"amp": trained.get("amp", "off"), "processes": trained.get("processes", 1)},
        "best": best_epoch(trained),
        "gflops": outputs["flops"].mean().item() / 1e9, "dense_gflops": model.dense_flops / 1e9,
        "params_m": trained["params"] / 1e6, "train_time_s": trained["train_time_s"],
        "num_videos": len(outputs["labels"]),
        "unreadable": {"count": skipped + trained["skipped"], "eval": skipped, "train": trained["skipped"]},
        "unreadable_files": {"train": trained["unreadable"], "eval": sorted(p for p, _ in skipped.items if p)},
        "stats": model.summarize(stats) if hasattr(model, "summarize") else stats,
        "config": spec, "environment": environment(device),
    }
    if hasattr(model, "eval_points"):  # methods that trade accuracy for FLOPs at test time (early exit)
        metrics["eval_points"] = model.eval_points(outputs)
    vio.write_json(run_dir / METRICS, metrics)
    return metrics


def add_arguments(parser):
    parser.add_argument("--run", required=True, help="run directory written by `vidbench train`")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")


def report(run_dir, progress: bool = True) -> dict:
    """Evaluate the run and print its headline figures."""
    metrics = evaluate(run_dir, progress=progress)
    print(f"{run_dir}: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  GFLOPs {metrics['gflops']:.4f}")
    return metrics


def run(args):
    with claim_for(load_spec(args.run)):
        report(args.run, progress=not args.no_progress)
