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
Reproduced cells are means over seeds (n = number of seeds). Published columns are prefixed
`paper_`. When several operating points of one method match a published row, the `default` point
is shown if there is one, else one row per point. A published row with no run keeps empty
reproduced cells; a table with no runs at all is still written (published only). A table's
`unpublished` rows (descriptive columns only, one per dataset of the table) are matched like
published ones and appear, with empty `paper_` cells, only when a run matches.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from vidbench.errors import InputError
from vidbench.io import write_text

PAPER_DIR = Path(__file__).resolve().parent / "paper"
SOURCE = "AdaFuse (Meng et al., ICLR 2021)"

# published backbone -> run backbones; earlyexit_msdnet builds an MSDNet-38-like network for resnet50
BACKBONES = {"ResNet18": ("resnet18",), "ResNet50": ("resnet50",), "MSDNet-38": ("resnet50",)}
STAND_INS = {"resnet_tiny": ("ResNet18",)}  # run backbone -> published backbones it stands in for
ALIASES = {"adafusetsn": {"adafuse"}}  # normalised published label -> other accepted paper_labels
# (paper_label, operating point) -> the published row label it reproduces (see methods/adafuse/method.yaml).
# A point listed here is preferred over the method's `default` point for that row.
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
    "table1": dict(csv="table1_sthv1_r18_inc.csv", dataset="sthv1",
                   title="Table 1: baselines on Something-Something V1",
                   metrics={"params_M": ("params_m", None), **ACC, "top5": ("top5", None)}),
    "table3": dict(csv="table3_four_datasets.csv",
                   title="Table 3: TSN, LSTM and AdaFuse on the four datasets",
                   metrics={"params_M": ("params_m", None), **ACC}),
    "table5": dict(csv="table5_sota.csv", wide=("sthv1", "sthv2"),
                   title="Table 5: state of the art on Something-Something V1 and V2",
                   metrics={"params_M": ("params_m", None), **ACC}),
    "table6": dict(csv="table6_policy_ablation.csv", dataset="sthv1", backbone="ResNet18",
                   aliases={"AdaFuse-TSN-R18": ("AdaFuse-TSN", "AdaFuse")},
                   title="Table 6: policy ablation (skip / reuse / adaptive), ResNet18, Something-V1",
                   metrics={**ACC, "skip_pct": SKIP, "reuse_pct": REUSE}),
    "table7": dict(csv="table7_hidden_lambda.csv", dataset="sthv2", backbone="ResNet50", label="AdaFuse-TSM+Last",
                   match={"hidden_units": HIDDEN_KEYS, "lambda": LAMBDA_KEYS}, extra_rows=True,
                   title="Table 7: AdaFuse-TSM+Last policy hidden size and lambda, ResNet50, Something-V2",
                   metrics={"params_M": ("params_m", None), **ACC,
                            "skip_pct": SKIP, "reuse_pct": REUSE}),
    "dynamic": dict(csv="dynamic_inference_sth.csv", wide=("sthv1", "sthv2"),
                    source="Dynamic Inference slides (Wu et al., CVPR-W 2020), Something-Something table",
                    stand_ins={"resnet_tiny": ("ResNet50", "MSDNet-38")},
                    labels={("TSN-8F", "ResNet50"): "TSN", ("TSM-8F", "ResNet50"): "TSM",
                            ("DynamicInference", "MSDNet-38"): "DynamicInference-MSDNet"},
                    unpublished=[{"method": "DynamicInference-frames", "backbone": "ResNet50"}],
                    note="DynamicInference rows: earlyexit (ResNet) and earlyexit_msdnet (MSDNet) at their "
                         "`default` threshold; DynamicInference-frames (earlyexit_frames, exits along the "
                         "frames) was not published.",
                    title="Dynamic Inference (Wu et al. 2020) on Something-Something V1 and V2",
                    metrics={**ACC, "top5": ("top5", None)}),
}
RUN_COLUMNS = ["n", "run_dataset", "run_method", "run_point", "run_backbone"]


def table_names() -> list[str]:
    return list(TABLES)


def add_arguments(parser):
    parser.add_argument("--summary", required=True, help="summary.csv from `vidbench aggregate`")
    parser.add_argument("--out", required=True, help="directory for <table>.md and <table>.csv")
    parser.add_argument("--tables", nargs="*", default=None, choices=table_names(), help="only these tables")


def run(args):
    from analysis.aggregate import read_summary

    summary = read_summary(args.summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.tables or table_names():
        frame, note = build_table(name, summary)
        write_text(out / f"{name}.csv", frame.to_csv(index=False, float_format="%.4g"))
        write_text(out / f"{name}.md", to_markdown(name, frame, note))
        print(f"{name}: {int((frame['n'] > 0).sum())} of {len(frame)} rows reproduced -> {out / name}.md/.csv")


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
        frame = pd.concat(parts).sort_values(["_order", "dataset"], kind="stable").drop(columns="_order")
        frame = frame.reset_index(drop=True)
    elif "dataset" not in frame.columns:
        after = [c for c in ("method", "backbone") if c in frame.columns]
        frame.insert(list(frame.columns).index(after[-1]) + 1 if after else 0, "dataset", spec["dataset"])
    return frame


def reproduced(summary):
    """Mean over seeds per (dataset, method, point, backbone), with n and the matching keys."""
    import pandas as pd

    if summary.empty:
        return summary.assign(n=pd.Series(dtype=int), paper_dataset=pd.Series(dtype=str))
    keys = ["dataset", "method", "point", "backbone"]
    numeric = [c for c in summary.columns if c not in keys and c != "seed" and pd.api.types.is_numeric_dtype(summary[c])]
    grouped = summary.groupby(keys, sort=False, dropna=False)
    frame = grouped[numeric].mean().reset_index() if numeric else grouped.size().reset_index()[keys]
    frame["n"] = grouped.size().values
    frame["paper_label"] = grouped["paper_label"].first().values if "paper_label" in summary else frame["method"]
    frame["paper_dataset"] = frame["dataset"].map(paper_dataset)
    pairs = list(zip(frame["paper_label"].astype(str), frame["point"].astype(str)))
    frame["row_label"] = [POINT_LABELS.get(pair, pair[0]) for pair in pairs]
    frame["explicit"] = [pair in POINT_LABELS for pair in pairs]
    return frame


def _value(frame, column, transform):
    import pandas as pd

    columns = [c for c in ((column,) if isinstance(column, str) else column) if c in frame.columns]
    if not columns:
        return pd.Series(math.nan, index=frame.index)
    values = pd.to_numeric(frame[columns[0]], errors="coerce")
    for other in columns[1:]:
        values = values.fillna(pd.to_numeric(frame[other], errors="coerce"))
    if transform == "pct" and values.notna().any() and values.max() <= 1.0:
        values = values * 100.0
    return values


def _config_value(row, keys):
    for key in keys:
        if key in row.index and row[key] == row[key] and row[key] is not None:
            try:
                return float(row[key])
            except (TypeError, ValueError):
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
        keep = []
        for idx, row in found.iterrows():
            ok = True
            for col, keys in spec["match"].items():
                value = _config_value(row, keys)
                ok &= value is not None and math.isclose(value, float(prow[col]), rel_tol=1e-6, abs_tol=1e-9)
            keep.append(ok)
        return found[keep] if keep else found
    # of one method's points, prefer those POINT_LABELS names for this row, then `default`, else show all
    parts = []
    for _, group in found.groupby(["dataset", "method", "backbone"], sort=False):
        if group["explicit"].any():
            group = group[group["explicit"]]
        elif (group["point"] == "default").any():
            group = group[group["point"] == "default"]
        parts.append(group)
    return found.loc[[i for p in parts for i in p.index]] if parts else found


def build_table(name: str, summary):
    """(table frame, note for the markdown header)."""
    import pandas as pd

    spec = TABLES[name]
    pub = published(name)
    repro = reproduced(summary)
    metrics = spec["metrics"]  # a metric the paper did not print (table 6's skip_pct) is reproduced only
    printed = [c for c in metrics if c in pub.columns]
    descriptive = [c for c in pub.columns if c not in metrics]
    for col, (source, transform) in metrics.items():
        repro[f"__{col}"] = _value(repro, source, transform)
    rows = [(prow, True) for _, prow in pub.iterrows()]
    rows += [(pd.Series({**dict.fromkeys(pub.columns, ""), **extra, "dataset": ds}), False)
             for extra in spec.get("unpublished", ()) for ds in pub["dataset"].unique()]
    records, used = [], set()
    for prow, is_published in rows:
        base = {c: prow[c] for c in descriptive}
        base.update({f"paper_{c}": prow[c] for c in printed})
        matches = _candidates(spec, prow, repro)
        if matches.empty and is_published:
            records.append({**base, "n": 0})
        for idx, row in matches.iterrows():
            used.add(idx)
            records.append({**base, **{c: row[f"__{c}"] for c in metrics}, **_run_columns(row)})
    if spec.get("extra_rows") and not repro.empty:
        label = spec.get("label")
        loose = repro[(repro["row_label"].map(norm) == norm(label))
                      & repro["paper_dataset"].eq(pub["dataset"].iloc[0])
                      & repro["backbone"].isin(_run_backbones(spec, spec.get("backbone")))]
        for idx, row in loose.iterrows():
            if idx in used:
                continue
            base = {c: "" for c in descriptive}
            base["dataset"] = row["paper_dataset"]
            for col, keys in spec.get("match", {}).items():
                value = _config_value(row, keys)
                base[col] = "" if value is None else f"{value:g}"
            records.append({**base, **{c: row[f"__{c}"] for c in metrics}, **_run_columns(row)})
    order = [*descriptive]
    for col in metrics:
        order += [f"paper_{col}", col] if col in printed else [col]
    order += RUN_COLUMNS
    frame = pd.DataFrame(records, columns=order)
    frame["n"] = frame["n"].fillna(0).astype(int)
    return frame, _note(name, frame)


def _run_columns(row) -> dict:
    return {"n": int(row["n"]), "run_dataset": row["dataset"], "run_method": row["method"],
            "run_point": row["point"], "run_backbone": row["backbone"]}


def _note(name, frame) -> str:
    spec = TABLES[name]
    done = frame[frame["n"] > 0]
    source = spec.get("source", f"{SOURCE}, {spec['title'].split(':')[0]}")
    lines = [f"Published: {source} (analysis/paper/{spec['csv']}); "
             "`paper_` columns are the published numbers, the columns beside them are reproduced "
             "(mean over seeds; n = number of seeds)."]
    if "note" in spec:
        lines.append(spec["note"])
    if done.empty:
        lines.append("No matching runs yet: published numbers only.")
        return "\n".join(lines)
    datasets = sorted(set(done["run_dataset"]))
    backbones = sorted(set(done["run_backbone"]))
    lines.append(f"Reproduced numbers come from datasets {', '.join(datasets)} with backbones {', '.join(backbones)}.")
    if any(d.startswith("synth-") for d in datasets):
        lines.append("Synthetic datasets (synth-*) only stand in for the real ones: their accuracies and costs are "
                     "not comparable with the published numbers in absolute terms; compare the ordering of methods.")
    for run_bb, paper_bbs in spec.get("stand_ins", STAND_INS).items():
        if run_bb in backbones:
            lines.append(f"{run_bb} stands in for {' and '.join(paper_bbs)}.")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 0.01 or value == 0:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")


def to_markdown(name, frame, note: str) -> str:
    title = TABLES[name]["title"]
    lines = [f"# {title}", "", *[f"> {line}" for line in note.splitlines()], ""]
    header = list(frame.columns)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for _, row in frame.iterrows():
        cells = [_cell(row[c]) if not (c == "n" and row[c] == 0) else "0" for c in header]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def check_published() -> None:
    """Every table's CSV exists and holds the columns its spec uses (for tests)."""
    for name, spec in TABLES.items():
        path = PAPER_DIR / spec["csv"]
        if not path.is_file():
            raise InputError(path, f"published table of {name} missing")
        pub = published(name)
        for col in ("dataset", *spec.get("match", {})):
            if col not in pub.columns:
                raise InputError(path, f"column {col!r} missing", expected=f"columns of {name}")
