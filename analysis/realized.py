"""`vidbench realized`: how much of each method's FLOP saving shows up as measured time.

One row per dataset, backbone, method and operating point (eval points included), means over seeds,
against TSN on the same dataset and backbone:

- flops_ratio = GFLOPs / TSN's GFLOPs (the bookkeeping);
- latency_ratio = measured batch-1 latency of the realized path / TSN's (`vidbench measure`);
- masked_latency_ratio = the same model through its masked path / TSN's;
- realized = latency saving / FLOP saving = (1 - latency_ratio) / (1 - flops_ratio): 1 when the time
  falls as the FLOPs do, 0 when nothing of the saving shows, negative when the method is slower than TSN;
  empty unless the FLOPs are at least 1% below TSN's (no saving to realize: a method that costs more
  than TSN and runs slower would otherwise show a large positive share).

Writes realized.csv, realized.md (a section per dataset) and realized.tex (booktabs).
"""
from __future__ import annotations

import math
from pathlib import Path

from analysis import render
from vidbench.io import write_text

REFERENCE = "tsn"
MIN_SAVING = 0.01
KEYS = ["dataset", "backbone", "method", "trained_point", "point"]
COLUMNS = [*KEYS, "title", "n", "top1", "gflops", "latency_ms", "latency_masked_ms", "flops_ratio", "latency_ratio",
           "masked_latency_ratio", "realized"]


def add_arguments(parser):
    parser.add_argument("--summary", required=True, help="summary.csv from `vidbench aggregate`")
    parser.add_argument("--out", required=True, help="directory for realized.csv and realized.md")


def run(args):
    from analysis.aggregate import read_summary

    table = realized_table(read_summary(args.summary))
    out = Path(args.out)
    write_text(out / "realized.csv", table.to_csv(index=False))
    write_text(out / "realized.md", markdown(table))
    write_text(out / "realized.tex", render.latex(TITLE, NOTE, display(table), text_columns=("dataset", "backbone",
                                                                                            "method", "point")))
    print(f"{len(table)} rows -> {out / 'realized'}.csv, .md, .tex")


def realized_share(flops_ratio: float, latency_ratio: float) -> float:
    """Latency saving / FLOP saving; NaN without a FLOP saving (at least MIN_SAVING) to realize."""
    saving = 1 - flops_ratio
    if math.isnan(saving) or math.isnan(latency_ratio) or saving < MIN_SAVING:
        return math.nan
    return (1 - latency_ratio) / saving


def realized_table(summary):
    """The table as a DataFrame (rows without a TSN run on their dataset and backbone are left out)."""
    import pandas as pd

    frame = summary.copy()
    for column in ("latency_ms", "latency_masked_ms"):
        if column not in frame:
            frame[column] = math.nan
    frame["trained_point"] = frame["trained_point"].fillna(frame["point"]) if "trained_point" in frame else frame["point"]
    frame["title"] = frame["title"] if "title" in frame else frame["method"]
    means = (frame.groupby(KEYS, dropna=False)
             .agg(title=("title", "first"), n=("seed", "nunique"), top1=("top1", "mean"), gflops=("gflops", "mean"),
                  latency_ms=("latency_ms", "mean"), latency_masked_ms=("latency_masked_ms", "mean"))
             .reset_index())
    reference = (means[(means["method"] == REFERENCE) & (means["point"] == "default")]
                 .set_index(["dataset", "backbone"])[["gflops", "latency_ms"]])
    rows = means.join(reference, on=["dataset", "backbone"], rsuffix="_tsn", how="inner")
    rows["flops_ratio"] = rows["gflops"] / rows["gflops_tsn"]
    rows["latency_ratio"] = rows["latency_ms"] / rows["latency_ms_tsn"]
    rows["masked_latency_ratio"] = rows["latency_masked_ms"] / rows["latency_ms_tsn"]
    rows["realized"] = [realized_share(f, t) for f, t in zip(rows["flops_ratio"], rows["latency_ratio"])]
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["dataset", "backbone", "flops_ratio"]).reset_index(drop=True)


TITLE = "Realized efficiency: FLOP savings against measured time (TSN = 1)"
NOTE = ("flops = GFLOPs / TSN's; latency = measured batch-1 latency (realized path) / TSN's; masked = the same "
        "model with every channel computed / TSN's; realized = latency saving / FLOP saving.")
DISPLAY = ["method", "point", "Top-1", "GFLOPs", "ms", "flops", "latency", "masked", "realized"]


def display(table):
    """The table's cells as text, with its dataset and backbone columns first."""
    import pandas as pd

    rows = []
    for row in table.itertuples():
        point = row.point if row.point == row.trained_point else f"{row.trained_point}: {row.point}"
        rows.append([row.dataset, row.backbone, row.title, point, _fmt(row.top1, 1), _fmt(row.gflops, 4),
                     _fmt(row.latency_ms, 2), _fmt(row.flops_ratio, 2), _fmt(row.latency_ratio, 2),
                     _fmt(row.masked_latency_ratio, 2), _fmt(row.realized, 2)])
    return pd.DataFrame(rows, columns=["dataset", "backbone", *DISPLAY])


def markdown(table) -> str:
    lines = [f"# {TITLE}", "", NOTE, ""]
    for (dataset, backbone), rows in display(table).groupby(["dataset", "backbone"], sort=True):
        lines += [f"## {dataset}, {backbone}", "", "| " + " | ".join(DISPLAY) + " |", "|" + "---|" * len(DISPLAY)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows[DISPLAY].itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)


def _fmt(value, digits: int) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
