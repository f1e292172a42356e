"""`vidbench aggregate`: collect every run's metrics.json into one summary.csv.

One row per run, plus one row per `eval_points` entry (methods such as early exit that sweep a
threshold at evaluation from one trained model): that row takes the entry's label as its `point`
(`<trained point>/<label>` when the trained point is not `default`, so that the points of several
trained points stay apart) and its top1/top5/gflops (and any other scalar it gives), and records the
trained point in `trained_point`. `frames` is the run's frame count (data.num_segments). Scalar method
statistics are flattened into columns (stats.policy.skip -> policy_skip; AdaFuse-style policies give
skip/reuse/keep at the top of stats) and the run's model config into `cfg_<key>` columns (e.g. cfg_lam,
cfg_hidden; per-backbone values picked for the run).
`status` is the run's own verdict on itself ("ok", or a short reason such as "diverged: ..."; a
metrics.json without one is "ok"); tables, plots, claims and statistics use only the "ok" rows
(`usable`) and name the others in their notes.
The timings of `vidbench measure` (latency.json beside metrics.json) fill the latency and throughput
columns: `latency_ms` is the realized batch-1 median (p10/p90 beside it), `latency_masked_ms` the same
model through its masked path; an eval point takes its own realized latency. An early-exit run's
`latency_ms` is, like its points', the mean over its exit shares on the whole validation split of the
latency of a video stopping at each checkpoint (no p10/p90), so that it matches its GFLOPs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from vidbench.backbone_values import per_backbone
from vidbench.errors import InputError
from vidbench.io import write_text

RUN_KEYS = ("dataset", "method", "point", "backbone", "seed")
LATENCY = ("latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_masked_ms", "throughput_vps",
           "throughput_masked_vps")
COLUMNS = [*RUN_KEYS, "status", "trained_point", "title", "paper_label", "top1", "top5", "top1_best", "best_epoch",
           "epochs", "gflops", "dense_gflops", "params_m", "train_time_s", *LATENCY, "num_videos", "unreadable",
           "frames"]
REQUIRED = ("run", "top1", "gflops")
OK = "ok"
NUMERIC = ("top1", "top5", "gflops", "dense_gflops", "params_m", "train_time_s", "latency_ms")
EVAL_POINT_FIELDS = ("top1", "top5", "gflops", "params_m", "latency_ms", "num_videos")


def add_arguments(parser):
    parser.add_argument("--runs", action="append", default=[], metavar="DIR",
                        help="directory searched recursively for metrics.json (repeatable)")
    parser.add_argument("--metrics", nargs="*", default=[], metavar="FILE",
                        help="metrics.json files (what the Snakemake rule passes: exactly the configured runs)")
    parser.add_argument("--out", required=True, help="summary CSV to write (atomically)")


def run(args):
    files = [Path(f) for f in args.metrics]
    for root in args.runs:
        if not Path(root).is_dir():
            raise InputError(root, "runs directory does not exist", expected="a directory holding */metrics.json")
        files += sorted(Path(root).rglob("metrics.json"))
    rows = collect(files)
    write_csv(rows, args.out)
    print(f"{len(rows)} rows from {len(files)} metrics.json -> {args.out}")


def _flatten(prefix: str, value, out: dict) -> None:
    """Scalars of nested dicts as prefix_key columns; lists and None are left out."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else str(key), inner, out)
    elif isinstance(value, bool):
        out[prefix] = value
    elif isinstance(value, (int, float, str)):
        out[prefix] = value


def _number(file, key, value, allow_none=True):
    if value is None and allow_none:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(file, f"{key} is {value!r}, not a number", expected=f'"{key}": <number>')
    return float(value)


def _status(file, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(file, f"status is {value!r}", expected='"status": "ok" or a short reason such as "diverged: ..."')
    return value.strip()


def load_metrics(file) -> dict:
    file = Path(file)
    try:
        data = json.loads(file.read_text())
    except OSError as err:
        raise InputError(file, f"cannot read metrics: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise InputError(file, f"malformed JSON: {err.msg}", line=err.lineno) from err
    if not isinstance(data, dict):
        raise InputError(file, "metrics is not a JSON object", expected="{\"run\": {...}, \"top1\": ...}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise InputError(file, f"missing keys {missing}", expected=f"keys {list(REQUIRED)} at the top level")
    run = data["run"]
    if not isinstance(run, dict) or any(run.get(k) in (None, "") for k in RUN_KEYS):
        raise InputError(file, f"'run' is {run!r}", expected=f"an object with a value for each of {list(RUN_KEYS)}")
    return data


def rows_of(file) -> list[dict]:
    """The summary rows of one metrics.json (the run, then one per eval_points entry)."""
    data = load_metrics(file)
    run = data["run"]
    unreadable = data.get("unreadable") or {}
    base = {key: run[key] for key in RUN_KEYS}
    base["seed"] = int(run["seed"])
    base["status"] = _status(file, data.get("status", OK))
    base.update(trained_point=run["point"], title=data.get("title", run["method"]),
                paper_label=data.get("paper_label", data.get("title", run["method"])),
                num_videos=data.get("num_videos"),
                unreadable=unreadable.get("count", 0) if isinstance(unreadable, dict) else unreadable)
    for key in NUMERIC:
        base[key] = _number(file, key, data.get(key), allow_none=key not in REQUIRED)
    best = data.get("best") or {}
    base.update(top1_best=_number(file, "best.top1", best.get("top1")), best_epoch=best.get("epoch"),
                epochs=data.get("epochs"))
    base["frames"] = ((data.get("config") or {}).get("data") or {}).get("num_segments")
    model = (data.get("config") or {}).get("model") or {}
    model = {k: per_backbone(v, str(run["backbone"])) for k, v in model.items()} if isinstance(model, dict) else {}
    cfg = {}
    _flatten("cfg", {k: v for k, v in model.items() if not isinstance(v, (dict, list))}, cfg)
    stats = {}
    _flatten("", data.get("stats") or {}, stats)
    stats = {(f"stats_{k}" if k in COLUMNS else k): v for k, v in stats.items()}
    timing = read_latency(Path(file).with_name("latency.json"))
    base.update(timing.get("run", {}))
    rows = [{**base, **cfg, **stats, "metrics": str(file)}]
    points = data.get("eval_points") or []
    if not isinstance(points, list):
        raise InputError(file, "eval_points is not a list", expected='"eval_points": [{"point": ..., "top1": ...}]')
    for i, entry in enumerate(points):
        if not isinstance(entry, dict) or "point" not in entry or "top1" not in entry or "gflops" not in entry:
            raise InputError(file, f"eval_points[{i}] is {entry!r}",
                             expected='{"point": <label>, "top1": <number>, "gflops": <number>, "top5": ...}')
        label = str(entry["point"]) if run["point"] == "default" else f"{run['point']}/{entry['point']}"
        row = {**base, **cfg, "point": label, **dict.fromkeys(LATENCY, math.nan), "metrics": str(file)}
        row["top5"] = math.nan
        for key in EVAL_POINT_FIELDS:
            if key in entry:
                row[key] = _number(file, f"eval_points[{i}].{key}", entry[key]) if key != "num_videos" else entry[key]
        row.update(timing.get("points", {}).get(str(entry["point"]), {}))   # latency.json: the unprefixed label
        extra = {}
        _flatten("", {k: v for k, v in entry.items() if k not in ("point", *EVAL_POINT_FIELDS)}, extra)
        row.update({(f"stats_{k}" if k in COLUMNS else k): v for k, v in extra.items()})
        rows.append(row)
    return rows


def read_latency(file: Path) -> dict:
    """latency.json -> {"run": columns of the run's row, "points": {eval point: columns}}; {} when absent."""
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
        latency, throughput = data["latency_ms"], data["throughput_vps"]
        run = {"latency_ms": latency["realized"]["median"], "latency_p10_ms": latency["realized"]["p10"],
               "latency_p90_ms": latency["realized"]["p90"], "latency_masked_ms": latency["masked"]["median"],
               "throughput_vps": throughput["realized"]["median"],
               "throughput_masked_vps": throughput["masked"]["median"]}
        if "expected_latency_ms" in data:
            # early exit: the median of the first videos, which stop at different checkpoints, is not the
            # mean cost of the split the run's GFLOPs describe; its exit shares over the split give it
            run.update(latency_ms=data["expected_latency_ms"], latency_p10_ms=math.nan, latency_p90_ms=math.nan)
        points = {p["point"]: {"latency_ms": p["latency_ms"], "latency_p10_ms": math.nan,
                               "latency_p90_ms": math.nan, "latency_masked_ms": p["latency_masked_ms"],
                               "throughput_vps": math.nan, "throughput_masked_vps": math.nan}
                  for p in data.get("eval_points", [])}
    except OSError as err:
        raise InputError(file, f"cannot read timings: {err.strerror}") from err
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(file, f"malformed timings ({err})",
                         expected='the output of `vidbench measure`: "latency_ms", "throughput_vps", ...') from err
    return {"run": run, "points": points}


def collect(files) -> list[dict]:
    rows, seen = [], {}
    for file in files:
        for row in rows_of(file):
            key = tuple(row[k] for k in RUN_KEYS)
            if key in seen:
                raise InputError(file, f"duplicate summary row {dict(zip(RUN_KEYS, key))}",
                                 expected=f"one row per run and eval point (also in {seen[key]})")
            seen[key] = file
            rows.append(row)
    rows.sort(key=lambda r: (r["dataset"], r["method"], r["backbone"], r["trained_point"], r["point"], r["seed"]))
    return rows


def write_csv(rows: list[dict], out) -> None:
    """Write the summary atomically (a crash never leaves half a file that Snakemake takes as done)."""
    import pandas as pd

    extra = sorted({k for r in rows for k in r} - set(COLUMNS) - {"metrics"})
    cfg = [k for k in extra if k.startswith("cfg_")]
    stats = [k for k in extra if not k.startswith("cfg_")]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *stats, *cfg, "metrics"])
    write_text(out, frame.to_csv(index=False))


def read_summary(path):
    """summary.csv as a DataFrame (clear error when missing or without the expected columns)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "summary not found", expected="the output of `vidbench aggregate`")
    try:
        frame = pd.read_csv(path, dtype={"point": str, "trained_point": str, "method": str, "dataset": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, f"unreadable summary: {err}") from err
    missing = [c for c in ("dataset", "method", "point", "backbone", "seed", "top1", "gflops") if c not in frame.columns]
    if missing:
        raise InputError(path, f"summary lacks columns {missing}", expected="the output of `vidbench aggregate`")
    return frame


def usable(summary):
    """(rows whose status is "ok", the other rows); a summary without a status column is all ok."""
    if "status" not in summary.columns:
        return summary, summary.iloc[0:0]
    ok = summary["status"].fillna(OK).astype(str).str.strip() == OK
    return summary[ok], summary[~ok]


def excluded_note(excluded) -> str:
    """One line naming the runs left out for their status ('' when none)."""
    if excluded.empty:
        return ""
    point = "trained_point" if "trained_point" in excluded.columns else "point"
    runs = excluded.drop_duplicates(subset=["dataset", "method", point, "backbone", "seed"])
    names = [f"{r['dataset']}/{r['method']}/{r[point]}/{r['backbone']}/seed{r['seed']} ({r['status']})"
             for _, r in runs.iterrows()]
    return (f"Left out: {len(runs)} run(s) whose status is not ok ({len(excluded)} summary row(s)): "
            + "; ".join(names) + ".")
