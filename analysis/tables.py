"""`vidbench tables`: the paper's tables, reproduced numbers beside the published ones.

Data-driven: each entry of TABLES names a published CSV (analysis/paper/, transcribed from the
AdaFuse paper, or from the Dynamic Inference slides for `dynamic`) and says how summary rows match
its rows:
- method: the published `method` column (or the table's fixed label) against a run's `paper_label`
  (compared case- and punctuation-insensitively, plus the few ALIASES below); a table's `labels`
  replace the label of a published (method, backbone) row, its `aliases` add accepted labels;
- backbone: BACKBONES maps a published backbone to run backbones, plus the table's stand-ins
  (`stand_ins`, default STAND_INS: resnet_tiny stands in for ResNet18);
- dataset: a run's dataset without its "synth-" prefix (synth-sthv1 -> sthv1);
- `match`: extra published columns compared with the run's resolved model config (table 7's hidden
  size and lambda), trying the config keys listed.
Reproduced cells are the mean over seeds with its sd and 95% Student-t interval (analysis/stats.py;
one seed: the value alone, marked n = 1). Published columns are prefixed `paper_`. Tables with a
`baseline` (the published TSN row) also compare each run with the `tsn` run of the same dataset,
backbone and seeds: the paired Top-1 difference, and GFLOPs relative to TSN beside the published
relative figure. agreement.{md,csv,tex} gives, per table and dataset, Kendall's tau between the
published and reproduced rankings by Top-1 and by GFLOPs, and for real data how many published values
lie inside the reproduced 95% interval. Runs whose status is not "ok" are left out, and named. When several operating points of one method match a published row, the `default` point
is shown if there is one, else one row per point. A published row with no run keeps empty
reproduced cells; a table with no runs at all is still written (published only). A table's
`unpublished` rows (descriptive columns only, one per dataset of the table) are matched like
published ones and appear, with empty `paper_` cells, only when a run matches.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from analysis import stats
from analysis.aggregate import excluded_note, usable
from analysis.render import write_table
from vidbench.errors import InputError

PAPER_DIR = Path(__file__).resolve().parent / "paper"
SOURCE = "AdaFuse (Meng et al., ICLR 2021)"

# published backbone -> run backbones; earlyexit_msdnet builds MSDNet-38 for resnet50
BACKBONES = {"ResNet18": ("resnet18",), "ResNet50": ("resnet50",), "MSDNet-38": ("resnet50",)}
STAND_INS = {"resnet_tiny": ("ResNet18",)}  # run backbone -> published backbones it stands in for
ALIASES = {"adafusetsn": {"adafuse"}}  # normalised published label -> other accepted paper_labels
# (paper_label, operating point) -> the published row label it reproduces (see methods/adafuse/method.yaml).
# A run at a listed point takes that row's label; at any other point it keeps its paper_label.
POINT_LABELS = {
    ("AdaFuse", "default"): "AdaFuse-TSN",
    ("AdaFuse", "tsm"): "AdaFuse-TSM",
    ("AdaFuse", "tsm-last"): "AdaFuse-TSM+Last",
    ("AdaFuse", "skip-only"): "Ada.Skip",
    ("AdaFuse", "reuse-only"): "Ada.Reuse",
}
HIDDEN_KEYS = ("cfg_hidden",)
LAMBDA_KEYS = ("cfg_lam",)

# published column -> (summary column or tuple of candidates, transform); "pct": fractions in [0, 1] -> percent
ACC = {"gflops": ("gflops", None), "top1": ("top1", None)}
SKIP = (("skip", "policy_skip"), "pct")
REUSE = (("reuse", "policy_reuse"), "pct")
TABLES = {
    "table1": dict(csv="table1_sthv1_r18_inc.csv", dataset="sthv1", baseline="TSN",
                   config_notes={"Threshold": ("cfg_keep_ratio", "Threshold keeps the top {} of conv1's output "
                                               "channels per frame (keep_ratio; 0.76 costs 11.28 GFLOPs on "
                                               "ResNet18, the published 11.3)")},
                   title="Table 1: baselines on Something-Something V1",
                   metrics={"params_M": ("params_m", None), **ACC, "top5": ("top5", None)}),
    "table3": dict(csv="table3_four_datasets.csv", baseline="TSN",
                   title="Table 3: TSN, LSTM and AdaFuse on the four datasets",
                   metrics={"params_M": ("params_m", None), **ACC}),
    "table5": dict(csv="table5_sota.csv", wide=("sthv1", "sthv2"), baseline="TSN",
                   title="Table 5: state of the art on Something-Something V1 and V2",
                   metrics={"params_M": ("params_m", None), **ACC}),
    "table6": dict(csv="table6_policy_ablation.csv", dataset="sthv1", backbone="ResNet18", baseline="TSN",
                   aliases={"AdaFuse-TSN-R18": ("AdaFuse-TSN", "AdaFuse")},
                   title="Table 6: policy ablation (skip / reuse / adaptive), ResNet18, Something-V1",
                   metrics={**ACC, "skip_pct": SKIP, "reuse_pct": REUSE}),
    "table7": dict(csv="table7_hidden_lambda.csv", dataset="sthv2", backbone="ResNet50", label="AdaFuse-TSM+Last",
                   match={"hidden_units": HIDDEN_KEYS, "lambda": LAMBDA_KEYS}, extra_rows=True,
                   title="Table 7: AdaFuse-TSM+Last policy hidden size and lambda, ResNet50, Something-V2",
                   metrics={"params_M": ("params_m", None), **ACC,
                            "skip_pct": SKIP, "reuse_pct": REUSE}),
    "dynamic": dict(csv="dynamic_inference_sth.csv", wide=("sthv1", "sthv2"), baseline="TSN-8F",
                    source="Dynamic Inference slides (Wu et al., CVPR-W 2020), Something-Something table",
                    stand_ins={"resnet_tiny": ("ResNet50", "MSDNet-38")},
                    labels={("TSN-8F", "ResNet50"): "TSN", ("TSM-8F", "ResNet50"): "TSM",
                            ("DynamicInference", "MSDNet-38"): "DynamicInference-MSDNet"},
                    unpublished=[{"method": "DynamicInference-frames", "backbone": "ResNet50"}],
                    # frames per video as published: the -8F/-16F labels; DynamicInference inferred (see note)
                    published_frames={"TSN-8F": 8, "TSN-16F": 16, "TSM-8F": 8, "TSM-16F": 16,
                                      "DynamicInference": 16},
                    note="DynamicInference rows: earlyexit (ResNet) and earlyexit_msdnet (MSDNet) at their "
                         "`default` threshold; DynamicInference-frames (earlyexit_frames, exits along the "
                         "frames) was not published. The slides do not print the frame count of their "
                         "Something rows; 16 is inferred (ResNet-50's 52.8 and 48.0 GFLOPs exceed its dense "
                         "8-frame 33 G, and their Kinetics rows state 16 frames). A row whose `frames` differ "
                         "from `paper_frames` is a different setting: its GFLOPs scale with the frame count "
                         "(workflow/config/paper-16f.yaml runs early exit at 16 frames).",
                    title="Dynamic Inference (Wu et al. 2020) on Something-Something V1 and V2",
                    metrics={**ACC, "top5": ("top5", None)}),
}
RUN_COLUMNS = ["n", "run_dataset", "run_method", "run_point", "run_backbone"]
BASELINE_METHOD = "tsn"  # the run every other run of a table with a `baseline` is paired with
SPREAD = ("sd", "lo", "hi")  # <metric>_sd, _lo, _hi: sample sd and 95% Student-t interval over seeds
VERSUS = ["top1_vs_tsn", "top1_vs_tsn_lo", "top1_vs_tsn_hi", "top1_vs_tsn_p", "top1_vs_tsn_n",
          "gflops_rel_tsn", "gflops_rel_tsn_lo", "gflops_rel_tsn_hi", "paper_gflops_rel_tsn"]
INSIDE = ("top1", "gflops")  # published values checked against the reproduced interval (real data)


def table_names() -> list[str]:
    return list(TABLES)


def add_arguments(parser):
    parser.add_argument("--summary", required=True, help="summary.csv from `vidbench aggregate`")
    parser.add_argument("--out", required=True, help="directory for <table>.md/.csv/.tex and agreement.*")
    parser.add_argument("--tables", nargs="*", default=None, choices=table_names(), help="only these tables")
    parser.add_argument("--figure", choices=FIGURES, default="final",
                        help="Top-1 shown: the final epoch's, or the best validation epoch's (optimistic)")


# which Top-1 the tables show, and what the note says of it
FIGURES = {
    "final": "Top-1 is the final epoch's.",
    "best": "Top-1 is the best validation epoch's (train.eval_every; summary column top1_best): optimistic, since "
            "the validation set chose the epoch, and what the released AdaFuse code printed as 'Best Prec@1'. "
            "Runs trained without validation have none.",
}


def with_figure(summary, figure: str):
    """The summary whose `top1` column holds the chosen figure (see FIGURES)."""
    if figure == "best":
        summary = summary.assign(top1=summary["top1_best"] if "top1_best" in summary else math.nan)
    return summary


def run(args):
    from analysis.aggregate import read_summary

    summary = with_figure(read_summary(args.summary), args.figure)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = {}
    notes = {}
    for name in args.tables or table_names():
        frames[name], notes[name] = build_table(name, summary)
    agree = agreement(frames)
    for name, frame in frames.items():
        note = "\n".join(filter(None, [notes[name], FIGURES[args.figure], agreement_line(agree[agree["table"] == name])]))
        write_table(out, name, TABLES[name]["title"], note, frame, display(name, frame),
                    text_columns=_text_columns(name, frame))
        print(f"{name}: {int((frame['n'] > 0).sum())} of {len(frame)} rows reproduced -> {out / name}.*")
    write_table(out, "agreement", AGREEMENT_TITLE, AGREEMENT_NOTE, agree, agreement_display(agree),
                text_columns=("table", "dataset"))
    print(f"agreement: {len(agree)} table/dataset rows -> {out / 'agreement'}.*")


def norm(label) -> str:
    return re.sub(r"[^a-z0-9+]", "", str(label).lower())


def paper_dataset(name: str) -> str:
    return name[len("synth-"):] if name.startswith("synth-") else name


def published(name: str):
    """The published table as strings (as printed), in long form: one row per dataset."""
    import pandas as pd

    spec = TABLES[name]
    path = PAPER_DIR / spec["csv"]
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "wide" in spec:
        parts = []
        for ds in spec["wide"]:
            cols = [c for c in frame.columns if c.startswith(f"{ds}_")]
            part = frame.drop(columns=[c for c in frame.columns if re.match(r"^(%s)_" % "|".join(spec["wide"]), c)])
            # dataset goes after the descriptive columns, before the first (non-wide) metric
            part.insert(next((i for i, c in enumerate(part.columns) if c in spec["metrics"]), len(part.columns)),
                        "dataset", ds)
            for col in cols:
                part[col[len(ds) + 1:]] = frame[col]
            part["_order"] = range(len(part))
            parts.append(part[(frame[cols] != "").any(axis=1)])
        frame = pd.concat(parts).sort_values(["_order", "dataset"]).drop(columns="_order")
        frame = frame.reset_index(drop=True)
    elif "dataset" not in frame.columns:
        after = [c for c in ("method", "backbone") if c in frame.columns]
        frame.insert(list(frame.columns).index(after[-1]) + 1 if after else 0, "dataset", spec["dataset"])
    return frame


def reproduced(summary):
    """Mean over seeds per (dataset, method, point, backbone), with n and the matching keys."""
    import pandas as pd

    if summary.empty:
        return summary
    keys = ["dataset", "method", "point", "backbone"]
    numeric = [c for c in summary.columns if c not in keys and pd.api.types.is_numeric_dtype(summary[c])]
    grouped = summary.groupby(keys, sort=False, dropna=False)
    frame = grouped[numeric].mean().reset_index()
    frame["n"] = grouped.size().values
    frame["paper_label"] = grouped["paper_label"].first().values if "paper_label" in summary else frame["method"]
    frame["paper_dataset"] = frame["dataset"].map(paper_dataset)
    pairs = zip(frame["paper_label"].astype(str), frame["point"].astype(str))
    frame["row_label"] = [POINT_LABELS.get(pair, pair[0]) for pair in pairs]
    return frame


def _value(frame, column, transform):
    import pandas as pd

    values = pd.Series(math.nan, index=frame.index)
    for name in (column,) if isinstance(column, str) else column:
        if name in frame.columns:
            values = values.fillna(pd.to_numeric(frame[name], errors="coerce"))
    return values * 100.0 if transform == "pct" else values


def _config_value(row, keys):
    """The first of the config columns `keys` that the run has, as a number (None: none, or not a number)."""
    import pandas as pd

    for key in keys:
        value = row.get(key)
        if pd.notna(value):
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _run_backbones(spec, backbone) -> tuple:
    """Run backbones matching a published backbone in this table: BACKBONES plus the table's stand-ins."""
    stand_ins = [run for run, paper in spec.get("stand_ins", STAND_INS).items() if backbone in paper]
    return (*BACKBONES.get(backbone, ()), *stand_ins)


def _candidates(spec, prow, repro):
    """Reproduced groups matching one published row."""
    if repro.empty:
        return repro
    backbone = prow.get("backbone", spec.get("backbone"))
    label = prow.get("method", spec.get("label"))
    label = spec.get("labels", {}).get((label, backbone), label)
    labels = {norm(label)} | ALIASES.get(norm(label), set()) | {norm(a) for a in spec.get("aliases", {}).get(label, ())}
    mask = (repro["row_label"].map(norm).isin(labels) & (repro["paper_dataset"] == prow["dataset"])
            & repro["backbone"].isin(_run_backbones(spec, backbone)))
    found = repro[mask]
    if spec.get("match"):
        return found.loc[[all(_config_value(row, keys) == float(prow[col]) for col, keys in spec["match"].items())
                          for _, row in found.iterrows()]]
    # of one method's points, show the `default` one if there is one, else all
    parts = []
    for _, group in found.groupby(["dataset", "method", "backbone"], sort=False):
        default = group[group["point"] == "default"]
        parts.append(group if default.empty else default)
    return found.loc[[i for p in parts for i in p.index]]


def _groups(summary) -> dict[tuple, object]:
    """(dataset, method, point, backbone) -> that run's rows, one per seed."""
    keys = ["dataset", "method", "point", "backbone"]
    return {key: group for key, group in summary.groupby(keys, dropna=False)}


def _seed_values(group, source, transform=None) -> dict[int, float]:
    return {int(seed): float(value) for seed, value in zip(group["seed"], _value(group, source, transform))}


def _key(row) -> tuple:
    return row["dataset"], row["method"], row["point"], row["backbone"]


def _measured(row, metrics: dict, groups: dict) -> dict:
    """Mean, sd and 95% interval over seeds of every metric of one reproduced group."""
    group = groups[_key(row)]
    out = {}
    for col, (source, transform) in metrics.items():
        est = stats.describe(_seed_values(group, source, transform).values())
        out.update({col: est.mean, f"{col}_sd": est.sd, f"{col}_lo": est.lo, f"{col}_hi": est.hi})
    return out


def _versus(row, groups: dict) -> dict:
    """Paired comparison with the tsn run of the same dataset and backbone over their common seeds."""
    base = groups.get((row["dataset"], BASELINE_METHOD, "default", row["backbone"]))
    if base is None:
        return {}
    group = groups[_key(row)]
    ratio = stats.paired_ratio(_seed_values(group, "gflops"), _seed_values(base, "gflops"))
    out = {"gflops_rel_tsn": ratio.mean, "gflops_rel_tsn_lo": ratio.lo, "gflops_rel_tsn_hi": ratio.hi}
    if row["method"] != BASELINE_METHOD:
        diff = stats.paired(_seed_values(group, "top1"), _seed_values(base, "top1"))
        out.update({"top1_vs_tsn": diff.mean, "top1_vs_tsn_lo": diff.lo, "top1_vs_tsn_hi": diff.hi,
                    "top1_vs_tsn_p": diff.p, "top1_vs_tsn_n": diff.n})
    return out


def _paper_number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _paper_relative(spec, pub) -> list[float]:
    """Published GFLOPs / the published baseline row's GFLOPs of the same dataset and backbone (a table
    without a backbone column has one)."""
    keyed = list(zip(*(pub[c] for c in ("dataset", "backbone") if c in pub.columns)))
    is_base = pub["method"].map(norm) == norm(spec["baseline"])
    base = {key: _paper_number(g) for key, g, b in zip(keyed, pub["gflops"], is_base) if b}
    return [_paper_number(g) / base[key] if base.get(key) else math.nan for key, g in zip(keyed, pub["gflops"])]


def _inside(record: dict, prow) -> dict:
    """For a run on real data: whether each published value lies inside the reproduced 95% interval
    (empty where the row has no published value: table 7's extra rows)."""
    out = {}
    for col in INSIDE:
        verdict = stats.inside(_estimate(record, col), _paper_number(prow.get(f"paper_{col}")))
        out[f"{col}_paper_inside_ci"] = "" if verdict is None else ("yes" if verdict else "no")
    return out


def _record(spec, base: dict, row, groups, paper_rel=math.nan) -> dict:
    record = {**base, **_measured(row, spec["metrics"], groups), **_run_columns(row)}
    if "published_frames" in spec and row.get("frames") == row.get("frames"):
        record["frames"] = str(int(row["frames"]))   # the run's frame count, beside the published one
    if "baseline" in spec:
        record.update({**_versus(row, groups), "paper_gflops_rel_tsn": paper_rel})
    if not str(row["dataset"]).startswith("synth-"):
        record.update(_inside(record, base))
    return record


def build_table(name: str, summary):
    """(table frame: published and reproduced numbers, for the CSV; note for the markdown header)."""
    import pandas as pd

    spec = TABLES[name]
    ok, excluded = usable(summary)
    pub = published(name)
    if "published_frames" in spec:
        pub["paper_frames"] = [str(spec["published_frames"].get(label, "")) for label in pub["method"]]
    repro = reproduced(ok)
    groups = _groups(ok)
    metrics = spec["metrics"]  # a metric the paper did not print (table 6's skip_pct) is reproduced only
    printed = [c for c in metrics if c in pub.columns]
    descriptive = [c for c in pub.columns if c not in metrics]
    paper_rel = _paper_relative(spec, pub) if "baseline" in spec else [math.nan] * len(pub)
    rows = [(prow, True, rel) for (_, prow), rel in zip(pub.iterrows(), paper_rel)]
    rows += [(pd.Series({**extra, "dataset": ds}).reindex(pub.columns), False, math.nan)
             for extra in spec.get("unpublished", ()) for ds in pub["dataset"].unique()]
    records, used = [], set()
    for prow, is_published, rel in rows:
        base = {c: prow[c] for c in descriptive}
        base.update({f"paper_{c}": prow[c] for c in printed})
        matches = _candidates(spec, prow, repro)
        if matches.empty and is_published:
            records.append({**base, "paper_gflops_rel_tsn": rel})
        for idx, row in matches.iterrows():
            used.add(idx)
            records.append(_record(spec, base, row, groups, rel))
    if spec.get("extra_rows") and not repro.empty:
        records += _extra_rows(spec, repro, used, groups)
    frame = pd.DataFrame(records, columns=_columns(spec, descriptive, printed))
    frame["n"] = frame["n"].fillna(0).astype(int)
    return frame, _note(name, frame, excluded, repro.loc[sorted(used)])


def _extra_rows(spec, repro, used, groups) -> list[dict]:
    """Runs of the table's method whose settings match no published row (table 7's other hidden sizes)."""
    loose = repro[(repro["row_label"].map(norm) == norm(spec["label"]))
                  & repro["paper_dataset"].eq(spec["dataset"])
                  & repro["backbone"].isin(_run_backbones(spec, spec["backbone"]))]
    records = []
    for idx, row in loose.iterrows():
        if idx in used:
            continue
        base = {"dataset": row["paper_dataset"]}
        for col, keys in spec["match"].items():
            value = _config_value(row, keys)
            base[col] = "" if value is None else f"{value:g}"
        records.append(_record(spec, base, row, groups))
    return records


def _columns(spec, descriptive, printed) -> list[str]:
    order = [*descriptive, *(["frames"] if "published_frames" in spec else [])]
    for col in spec["metrics"]:
        order += [f"paper_{col}"] if col in printed else []
        order += [col, *(f"{col}_{s}" for s in SPREAD)]
    if "baseline" in spec:
        order += VERSUS
    order += [f"{col}_paper_inside_ci" for col in INSIDE if col in printed]
    return order + RUN_COLUMNS


def _run_columns(row) -> dict:
    return {"n": int(row["n"]), "run_dataset": row["dataset"], "run_method": row["method"],
            "run_point": row["point"], "run_backbone": row["backbone"]}


def _text_columns(name, frame) -> list[str]:
    spec = TABLES[name]
    return [c for c in frame.columns if not any(c == m or c == f"paper_{m}" for m in spec["metrics"])
            and c not in VERSUS and c != "n"]


def _estimate(row, col) -> "stats.Estimate":
    return stats.Estimate(int(row["n"]), row[col], row[f"{col}_sd"], row[f"{col}_lo"], row[f"{col}_hi"])


def _interval_text(row, col) -> str:
    """'0.63 [0.62, 0.64]' (a ratio: no sd shown), 'value (n = 1)' without an interval."""
    value, lo, hi = (row[f"{col}{s}"] for s in ("", "_lo", "_hi"))
    if not math.isfinite(value):
        return ""
    if not math.isfinite(lo):
        return f"{stats.number(value)} (n = 1)" if int(row["n"]) == 1 else stats.number(value)
    return f"{stats.number(value)} [{stats.number(lo)}, {stats.number(hi)}]"


def display(name, frame):
    """The table as readers see it (markdown and LaTeX): one cell per figure, spread folded in."""
    import pandas as pd

    spec = TABLES[name]
    shown = [c for c in frame.columns if not c.endswith(tuple(f"_{s}" for s in SPREAD))
             and c not in ("top1_vs_tsn_p", "top1_vs_tsn_n")]
    if frame[frame["n"] > 0]["run_dataset"].astype(str).str.startswith("synth-").all():
        shown = [c for c in shown if not c.endswith("_paper_inside_ci")]
    cells = {}
    for col in shown:
        if col in spec["metrics"]:
            cells[col] = [stats.describe_text(_estimate(row, col)) for _, row in frame.iterrows()]
        elif col == "top1_vs_tsn":
            cells[col] = [_comparison_text(row) for _, row in frame.iterrows()]
        elif col == "gflops_rel_tsn":
            cells[col] = [_interval_text(row, col) for _, row in frame.iterrows()]
        elif col == "paper_gflops_rel_tsn":
            cells[col] = [stats.number(v) for v in frame[col]]
        else:
            cells[col] = ["" if v is None or v != v else str(v) for v in frame[col]]
    return pd.DataFrame(cells)


def _comparison_text(row) -> str:
    """The paired difference with TSN ('' for a row without one: TSN itself, or no run)."""
    if not math.isfinite(row["top1_vs_tsn"]):
        return ""
    return stats.comparison_text(stats.Estimate(int(row["top1_vs_tsn_n"]), row["top1_vs_tsn"], math.nan,
                                                row["top1_vs_tsn_lo"], row["top1_vs_tsn_hi"], row["top1_vs_tsn_p"]))


def _config_lines(spec, matched) -> list[str]:
    """The table's `config_notes` ({row label: (summary column, text with {} for its values)}) for the
    matched runs: which setting a row was reproduced with."""
    lines = []
    for label, (column, text) in spec.get("config_notes", {}).items():
        rows = matched[matched["row_label"].map(norm) == norm(label)]
        if column in rows.columns and rows[column].notna().any():
            lines.append(text.format(", ".join(f"{v:g}" for v in sorted(rows[column].dropna().unique()))) + ".")
    return lines


def _note(name, frame, excluded, matched) -> str:
    spec = TABLES[name]
    done = frame[frame["n"] > 0]
    source = spec.get("source", f"{SOURCE}, {spec['title'].split(':')[0]}")
    lines = [f"Published: {source} (analysis/paper/{spec['csv']}); `paper_` columns are the published "
             "numbers, the columns beside them reproduced: mean ± sd [95% Student-t interval] over n seeds; "
             "with n = 1 the single value, marked (n = 1): no spread can be given. run_* name the runs averaged."]
    if "baseline" in spec:
        lines.append("top1_vs_tsn: the run's Top-1 minus that of the `tsn` run on the same dataset and backbone, "
                     "paired over their common seeds: mean difference [95% interval], p of a paired t-test "
                     "(n = 1: one pair, no test). gflops_rel_tsn: the run's GFLOPs / TSN's, per seed, "
                     "[95% interval]; paper_gflops_rel_tsn: the same ratio of the published rows "
                     f"(against the published {spec['baseline']} row of the same dataset and backbone).")
    if any(c.endswith("_pct") for c in spec["metrics"]):
        lines.append("skip_pct, reuse_pct: the share of channel decisions that skip or reuse (%).")
    if any(c.endswith("_paper_inside_ci") for c in frame.columns) and not done.empty \
            and not done["run_dataset"].astype(str).str.startswith("synth-").all():
        lines.append("<metric>_paper_inside_ci (real data): whether the published value lies inside the "
                     "reproduced 95% interval (empty with n < 2).")
    if "note" in spec:
        lines.append(spec["note"])
    lines.append(excluded_note(excluded))
    if done.empty:
        lines.append("No matching runs yet: published numbers only.")
        return "\n".join(filter(None, lines))
    datasets = sorted(set(done["run_dataset"]))
    backbones = sorted(set(done["run_backbone"]))
    lines.append(f"Reproduced numbers come from datasets {', '.join(datasets)} with backbones {', '.join(backbones)}.")
    lines += _config_lines(spec, matched)
    if any(d.startswith("synth-") for d in datasets):
        lines.append("Synthetic datasets (synth-*) only stand in for the real ones: their accuracies and costs are "
                     "not comparable with the published numbers in absolute terms; compare the ordering of methods "
                     "and the costs relative to TSN.")
    for run_bb, paper_bbs in spec.get("stand_ins", STAND_INS).items():
        if run_bb in backbones:
            lines.append(f"{run_bb} stands in for {' and '.join(paper_bbs)}.")
    return "\n".join(filter(None, lines))


AGREEMENT_TITLE = "Published vs reproduced: rank agreement per table and dataset"
AGREEMENT_NOTE = (
    "One row per table and dataset with reproduced rows. tau_top1, tau_gflops: Kendall's tau-b (scipy.stats."
    "kendalltau) between the published and the reproduced values (means over seeds) of the rows that have both, "
    "by Top-1 and by GFLOPs: 1 = the same order, -1 = reversed, empty with fewer than 2 rows or a constant "
    "column; p_*: its two-sided p-value (few rows give large p: 3 rows cannot reach p < 0.05); rows_*: how many "
    "rows were ranked. inside_ci (real data only): how many published Top-1 and GFLOPs values lie inside the "
    "reproduced 95% interval, of those with an interval (n >= 2); synthetic data cannot match published "
    "values, so only the orderings and the costs relative to TSN (the tables' gflops_rel_tsn) are compared.")


def agreement(frames: dict) -> "object":
    """Kendall tau of published vs reproduced rankings per (table, dataset), and the inside-interval count."""
    import pandas as pd

    records = []
    for name, frame in frames.items():
        done = frame[frame["n"] > 0]
        for dataset, rows in done.groupby("dataset", sort=False):
            record = {"table": name, "dataset": dataset}
            for col in INSIDE:
                tau, p, count = stats.kendall(rows[f"paper_{col}"].map(_paper_number), rows[col])
                record.update({f"tau_{col}": tau, f"p_{col}": p, f"rows_{col}": count})
            checked = [v for col in INSIDE for v in rows[f"{col}_paper_inside_ci"] if v in ("yes", "no")]
            record["inside_ci"] = (f"{checked.count('yes')} of {len(checked)}" if checked else
                                   "n/a (synthetic)" if str(rows["run_dataset"].iloc[0]).startswith("synth-") else "")
            records.append(record)
    columns = ["table", "dataset", "rows_top1", "tau_top1", "p_top1", "rows_gflops", "tau_gflops", "p_gflops",
               "inside_ci"]
    return pd.DataFrame(records, columns=columns)


def agreement_display(agree):
    shown = agree.copy()
    for col in ("tau_top1", "tau_gflops"):
        shown[col] = [stats.number(v) for v in agree[col]]
    for col in ("p_top1", "p_gflops"):
        shown[col] = [stats.p_text(v) for v in agree[col]]
    for col in ("rows_top1", "rows_gflops"):
        shown[col] = [str(int(v)) for v in agree[col]]
    return shown.astype(str)


def agreement_line(rows) -> str:
    """The agreement of one table in a sentence, for its note."""
    parts = [f"{r['dataset']}: Top-1 {stats.number(r['tau_top1']) or '-'} ({int(r['rows_top1'])} rows), "
             f"GFLOPs {stats.number(r['tau_gflops']) or '-'}" for _, r in rows.iterrows()]
    return ("Rank agreement with the published rows, Kendall's tau (agreement.md): " + "; ".join(parts) + ".") if parts else ""


def check_published() -> None:
    """Every table's CSV exists and holds the columns its spec uses (for tests): its dataset, the published
    Top-1 and GFLOPs that the interval checks read, and its `match` settings."""
    for name, spec in TABLES.items():
        path = PAPER_DIR / spec["csv"]
        if not path.is_file():
            raise InputError(path, f"published table of {name} missing")
        pub = published(name)
        for col in ("dataset", *INSIDE, *spec.get("match", {})):
            if col not in pub.columns:
                raise InputError(path, f"column {col!r} missing", expected=f"columns of {name}")
