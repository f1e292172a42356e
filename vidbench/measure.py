"""`vidbench measure`: time trained runs through their masked and their realized (sparse) paths.

Timing is only worth something when nothing else runs on the cores: the workflow's measuring rule takes
every core and runs after the evaluations, and times with the torch threads the run computes with
(`train.threads`: on a shared machine more threads than free cores make the timings meaningless). Per
run, on the first validation videos:

- latency: one video at a time (batch 1), ms per video;
- throughput: one batch of the evaluation batch size, videos per second;

each through the masked path (what training computes: every channel, masks applied) and the realized
one (`vidbench.sparse.set_sparse`: only the work the decisions keep), the two alternating repetition by
repetition so that drift hits both alike, after warm-up passes; median and 10th/90th percentiles.
Static methods have one path: their realized figures are their masked ones. Early exit: the realized
latency of a video that stops at each checkpoint (the exit forced there) is measured, and a threshold
point's latency is the mean over its exit shares (those of the whole validation split, from
metrics.json), so every point of the sweep has its own measured cost. Writes <run>/latency.json.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from vidbench import io as vio
from vidbench.devices import claim_for
from vidbench.engine import build_model, device_of, keep_freed_memory, load_spec, make_loader
from vidbench.errors import InputError
from vidbench.evaluate import METRICS, load_trained
from vidbench.sparse import Realizable, set_sparse

LATENCY = "latency.json"
PATHS = ("masked", "realized")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(model, inputs: list[torch.Tensor], device, repeats: int, warmup: int, paths=PATHS) -> dict[str, list[float]]:
    """Seconds per forward of each path, alternating paths (and their order) repetition by repetition,
    cycling through `inputs`; `warmup` rounds first, not kept."""
    times = {path: [] for path in paths}
    with torch.no_grad():
        for i in range(warmup + repeats):
            order = paths if i % 2 == 0 else paths[::-1]
            for path in order:
                set_sparse(model, path == "realized")
                _sync(device)
                start = time.perf_counter()
                model(inputs[i % len(inputs)])
                _sync(device)
                if i >= warmup:
                    times[path].append(time.perf_counter() - start)
    set_sparse(model, False)
    return times


def spread(values: list[float], scale: float = 1.0) -> dict:
    """Median and 10th/90th percentiles of `values` x scale."""
    values = sorted(v * scale for v in values)
    quantile = (lambda q: statistics.quantiles(values, n=10, method="inclusive")[q]) if len(values) > 1 else (
        lambda q: values[0])
    return {"median": statistics.median(values), "p10": quantile(0), "p90": quantile(8), "n": len(values)}


def exit_latencies(model, videos, device, repeats: int, warmup: int) -> list[float]:
    """Median realized batch-1 latency (ms) of a video that stops at each checkpoint."""
    forced = model.force_exit
    medians = []
    try:
        for e in range(len(model.checkpoint_names())):
            model.force_exit = e
            medians.append(spread(timed(model, videos, device, repeats, warmup, ("realized",))["realized"], 1000)["median"])
    finally:
        model.force_exit = forced
    return medians


def weighted(latencies: list[float], shares, source: Path) -> float:
    """The mean latency of videos stopping at each checkpoint in these shares (one share per checkpoint,
    read from `source`)."""
    if len(shares) != len(latencies):
        raise InputError(source, f"{len(shares)} exit shares for {len(latencies)} checkpoints",
                         expected="one share per checkpoint of the run's model")
    return sum(latency * share for latency, share in zip(latencies, shares))


def logit_gap(model, batch: torch.Tensor) -> float:
    """Largest |masked - realized| logit on `batch` (random policies redraw the same actions after eval())."""
    logits = {}
    with torch.no_grad():
        for path in PATHS:
            torch.manual_seed(0)
            model.eval()
            set_sparse(model, path == "realized")
            logits[path] = model(batch).logits.float()
    set_sparse(model, False)
    return (logits["masked"] - logits["realized"]).abs().max().item()


def measure(run_dir, threads: int | None = None) -> dict:
    """The timing figures of one evaluated run (its metrics.json supplies the exit shares)."""
    run_dir = Path(run_dir)
    spec = load_spec(run_dir)
    torch.set_num_threads(threads or spec["train"]["threads"])
    device = device_of(spec)
    trained = load_trained(run_dir, spec)
    model = build_model(spec, trained["costs"])
    model.load_state_dict(trained["model"])
    model.to(device).eval()
    settings = spec["eval"]
    repeats, warmup = settings["latency_videos"], settings["latency_warmup"]
    loader = make_loader(spec, "val", train=False, batch_size=settings["batch_size"])
    batch = next(clips for clips, labels, _ in loader if len(labels)).to(device)
    videos = [batch[i:i + 1] for i in range(min(len(batch), repeats))]
    sparse = any(isinstance(module, Realizable) for module in model.modules())
    paths = PATHS if sparse else ("masked",)
    latency = timed(model, videos, device, repeats, warmup, paths)
    throughput = timed(model, [batch], device, settings["throughput_batches"], 1, paths)
    figures = {
        "latency_ms": {p: spread(latency[p], 1000) for p in paths},
        "throughput_vps": {p: spread([len(batch) / t for t in throughput[p]]) for p in paths},
    }
    for kind in figures.values():
        kind.setdefault("realized", kind["masked"])
    result = {"run": {k: spec[k] for k in ("dataset", "method", "point", "backbone", "seed")},
              "sparse_path": sparse, **figures,
              "setting": {"device": _device_name(device), "threads": torch.get_num_threads(), "warmup": warmup,
                          "latency_repeats": repeats, "latency_videos": len(videos),
                          "throughput_batch": len(batch), "torch": torch.__version__}}
    if sparse:
        result["max_logit_gap"] = logit_gap(model, batch)
    if hasattr(model, "force_exit"):
        result.update(exit_points(model, run_dir, videos, device, repeats, warmup, result["latency_ms"]["masked"]))
    return result


def exit_points(model, run_dir: Path, videos, device, repeats, warmup, masked: dict) -> dict:
    """Early exit: per-checkpoint latencies, the run's latency at its own exit shares and one latency per
    evaluation point."""
    source = run_dir / METRICS
    metrics = json.loads(source.read_text())
    per_exit = exit_latencies(model, videos, device, repeats, warmup)
    points = [{"point": p["point"], "latency_ms": weighted(per_exit, p["exit_share"], source),
               "latency_masked_ms": masked["median"]} for p in metrics["eval_points"]]
    return {"checkpoint_latency_ms": per_exit,
            "expected_latency_ms": weighted(per_exit, metrics["stats"]["exit_at"], source), "eval_points": points}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs)"


def add_arguments(parser):
    parser.add_argument("--runs", nargs="+", required=True, help="run directories (trained and evaluated)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the run's train.threads)")


def run(args):
    keep_freed_memory()
    with claim_for(load_spec(args.runs[0])):
        measure_runs(args.runs, args.threads)


def measure_runs(run_dirs, threads) -> None:
    for run_dir in run_dirs:
        figures = measure(run_dir, threads)
        vio.write_json(Path(run_dir) / LATENCY, figures)
        latency = figures["latency_ms"]
        print(f"{run_dir}: batch-1 latency masked {latency['masked']['median']:.2f} ms, "
              f"realized {latency['realized']['median']:.2f} ms")
