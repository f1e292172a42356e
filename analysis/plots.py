"""`vidbench plots`: accuracy-vs-cost Pareto plots, one per dataset (PNG and PDF, plotted points as CSV).

x = GFLOPs per video (pareto_<dataset>) or, with `--x latency_ms`, the measured batch-1 latency of the
realized path in ms per video (latency_<dataset>, `vidbench measure`); y = Top-1 (%), marker size = parameters (M; the legend shows a few evenly
spaced levels), colour = method (colour-blind-safe), marker shape = method and operating point (and
backbone, when there are several).
Points are means over seeds; error bars are the 95% Student-t interval over seeds (analysis/stats.py),
drawn for points with n >= 2 (a point without bars comes from one seed). Runs whose status is not
"ok" are left out (named in the note below the axes). A method
with several points (operating points or eval_points) is drawn as a curve in cost order; the Pareto
front over all points (no other point has lower-or-equal cost and higher-or-equal Top-1) is a dashed
step line.
"""
from __future__ import annotations

from pathlib import Path

from analysis import stats
from analysis.aggregate import excluded_note, usable
from vidbench.io import write_text

# cost column -> (file prefix, axis label)
AXES = {"gflops": ("pareto", "GFLOPs per video"),
        "latency_ms": ("latency", "measured latency, ms per video (batch 1, realized path)")}


def add_arguments(parser):
    parser.add_argument("--summary", required=True, help="summary.csv from `vidbench aggregate`")
    parser.add_argument("--out", required=True, help="directory for pareto_<dataset>.png/.pdf")
    parser.add_argument("--datasets", nargs="*", default=None,
                        help="datasets to plot (default: those in the summary); one without runs gets an empty plot")
    parser.add_argument("--x", choices=sorted(AXES), default="gflops", help="the cost axis")


def run(args):
    from analysis.aggregate import read_summary

    summary = read_summary(args.summary)
    datasets = args.datasets if args.datasets else sorted(summary["dataset"].astype(str).unique())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        files = plot_dataset(summary, dataset, out, getattr(args, "x", "gflops"))
        print(f"{dataset}: {', '.join(map(str, files))}")


def pareto_front(gflops, top1) -> list[int]:
    """Indices of the non-dominated points (lower GFLOPs and higher Top-1 are better), in GFLOPs order.

    A point is dominated when another has GFLOPs <= and Top-1 >= with one of them strict; of exact
    duplicates only the first is kept.
    """
    order = sorted(range(len(gflops)), key=lambda i: (gflops[i], -top1[i], i))
    front, best = [], float("-inf")
    for i in order:
        if top1[i] > best:
            front.append(i)
            best = top1[i]
    return front


def points(summary, dataset, sweeps: dict[str, tuple] | None = None, x: str = "gflops"):
    """Mean over seeds per (method, backbone, point) of one dataset, with its legend label and curve.

    A curve joins the evaluation-time points of one trained model (early exit) and the operating points a
    method lists as its `sweep`; any other non-default operating point is its own marker, labelled
    "<title> (<point>)" (an ablation such as AdaFuse's skip-only).
    """
    rows = summary[summary["dataset"].astype(str) == dataset]
    if rows.empty:
        return rows
    rows = rows.assign(trained_point=rows["trained_point"].fillna(rows["point"]) if "trained_point" in rows
                       else rows["point"], title=rows["title"] if "title" in rows else rows["method"])
    if x not in rows:
        return rows.iloc[0:0]
    agg = {x: "mean", "top1": "mean", "title": "first"}
    if "params_m" in rows.columns:
        agg["params_m"] = "mean"
    keys = ["method", "backbone", "trained_point", "point"]
    frame = rows.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()
    frame = frame.merge(_intervals(rows, keys, x), on=keys, how="left").dropna(subset=[x, "top1"])
    sweeps = sweeps or {}
    in_sweep = [tp in sweeps.get(m, ()) for m, tp in zip(frame["method"], frame["trained_point"])]
    frame["curve"] = [f"{m}/{'sweep' if s else tp}" for m, tp, s in zip(frame["method"], frame["trained_point"], in_sweep)]
    frame["label"] = [str(t) if s or tp == "default" else f"{t} ({tp})"
                      for t, tp, s in zip(frame["title"], frame["trained_point"], in_sweep)]
    if "params_m" not in frame:
        frame["params_m"] = 1.0
    return frame.sort_values(["curve", "backbone", x]).reset_index(drop=True)


def _intervals(rows, keys, x="gflops"):
    """n and the 95% Student-t interval of the cost `x` and Top-1 over seeds per point (NaN for one seed)."""
    import pandas as pd

    records = []
    for key, group in rows.groupby(keys, sort=False, dropna=False):
        record = {**dict(zip(keys, key)), "n": len(group)}
        for col in (x, "top1"):
            est = stats.describe(group[col])
            record[f"{col}_lo"], record[f"{col}_hi"] = est.lo, est.hi
        records.append(record)
    return pd.DataFrame(records, columns=[*keys, "n", f"{x}_lo", f"{x}_hi", "top1_lo", "top1_hi"])


def _error_bars(ax, data, palette, x="gflops") -> None:
    """95% intervals over seeds as error bars in each point's colour, where a point has n >= 2."""
    bars = data[(data["n"] >= 2) & data["top1_lo"].notna()]
    for _, row in bars.iterrows():
        ax.errorbar(row[x], row["top1"], color=palette[row["label"]], fmt="none", elinewidth=1.0,
                    capsize=2.5, zorder=1.5,
                    xerr=[[row[x] - row[f"{x}_lo"]], [row[f"{x}_hi"] - row[x]]],
                    yerr=[[row["top1"] - row["top1_lo"]], [row["top1_hi"] - row["top1"]]])


def _palette(data, sns) -> dict:
    """label -> colour: one colour-blind-safe colour per method (its variants share it and differ by
    marker shape, as every label does), so that no two methods differ by a near-identical hue."""
    titles = sorted(data["title"].astype(str).unique())
    colours = sns.color_palette("colorblind" if len(titles) <= 10 else "husl", len(titles))
    of_title = dict(zip(titles, colours))
    return {label: of_title[str(title)] for label, title in zip(data["label"], data["title"])}


def _size_levels(params):
    """Parameters rounded to 2 significant digits, so that near-equal sizes share one legend level."""
    filled = params.fillna(params.mean() if params.notna().any() else 1.0)
    return filled.map(lambda v: float(f"{v:.2g}"))


def _caption(data, excluded) -> str:
    seeds = sorted(set(data["n"])) if not data.empty else []
    text = ("error bars: 95% Student-t interval over seeds (points with n >= 2); no bars: one seed"
            + (f"; n per point: {', '.join(map(str, seeds))}" if seeds else ""))
    note = excluded_note(excluded)
    return f"{text}\n{note}" if note else text


def plot_dataset(summary, dataset: str, out: Path, x: str = "gflops") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from vidbench.plugins import discover

    ok, excluded = usable(summary)
    excluded = excluded[excluded["dataset"].astype(str) == dataset]
    data = points(ok, dataset, {name: method.sweep for name, method in discover().items()}, x)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if data.empty:
        ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
    else:
        if data["backbone"].nunique() > 1:
            data["label"] = data["label"] + " / " + data["backbone"].astype(str)
        labels = sorted(data["label"].unique())
        palette = _palette(data, sns)
        for (_, _), curve in data.groupby(["curve", "backbone"], sort=False):
            if len(curve) > 1:
                ax.plot(curve[x], curve["top1"], color=palette[curve["label"].iloc[0]],
                        linewidth=1.2, alpha=0.7, zorder=1)
        _error_bars(ax, data, palette, x)
        sns.scatterplot(data=data.assign(params_m=_size_levels(data["params_m"])), x=x, y="top1",
                        hue="label", hue_order=labels, palette=palette, style="label", style_order=labels,
                        size="params_m", sizes=(40, 320), legend="brief", ax=ax, zorder=2, edgecolor="black",
                        linewidth=0.5)
        front = pareto_front(list(data[x]), list(data["top1"]))
        data["on_front"] = data.index.isin(front)
        fx, fy = list(data[x].iloc[front]), list(data["top1"].iloc[front])
        fx.append(data[x].max())  # hold the best accuracy to the costliest point
        fy.append(fy[-1])
        ax.step(fx, fy, where="post", linestyle="--", color="0.3", linewidth=1.0, zorder=0, label="Pareto front")
        handles, names = ax.get_legend_handles_labels()
        names = [{"label": "method", "params_m": "params (M)"}.get(n, n) for n in names]
        ax.legend(handles, names, bbox_to_anchor=(1.02, 1.0), loc="upper left", borderaxespad=0.0,
                  fontsize="small", frameon=False)
    prefix, label = AXES[x]
    ax.set_xlabel(label)
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.set_title(f"{dataset}: accuracy vs. cost")
    ax.grid(True, alpha=0.3)
    fig.text(0.01, -0.02, _caption(data, excluded), fontsize=7, va="top", ha="left", wrap=True)
    files = [out / f"{prefix}_{dataset}.{ext}" for ext in ("png", "pdf", "csv")]
    fig.savefig(files[0], dpi=150, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    plt.close(fig)
    write_text(files[2], data.to_csv(index=False))  # the plotted points, for reading off exact values
    return files
