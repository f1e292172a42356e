"""`vidbench plots`: accuracy-vs-cost Pareto plots, one per dataset (PNG and PDF, plotted points as CSV).

x = GFLOPs per video, y = Top-1 (%), marker size = parameters (M), colour = method, marker =
backbone. Points are means over seeds. A method with several points (operating points or
eval_points) is drawn as a curve in GFLOPs order; the Pareto front over all points (no other point
has lower-or-equal GFLOPs and higher-or-equal Top-1) is a dashed step line.
"""
from __future__ import annotations

from pathlib import Path

from vidbench.io import write_text


def add_arguments(parser):
    parser.add_argument("--summary", required=True, help="summary.csv from `vidbench aggregate`")
    parser.add_argument("--out", required=True, help="directory for pareto_<dataset>.png/.pdf")
    parser.add_argument("--datasets", nargs="*", default=None,
                        help="datasets to plot (default: those in the summary); one without runs gets an empty plot")


def run(args):
    from analysis.aggregate import read_summary

    summary = read_summary(args.summary)
    datasets = args.datasets if args.datasets else sorted(summary["dataset"].astype(str).unique())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        files = plot_dataset(summary, dataset, out)
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


def points(summary, dataset, sweeps: dict[str, tuple] | None = None):
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
    agg = {"gflops": "mean", "top1": "mean", "title": "first"}
    if "params_m" in rows.columns:
        agg["params_m"] = "mean"
    frame = rows.groupby(["method", "backbone", "trained_point", "point"], sort=False, dropna=False).agg(agg)
    frame = frame.reset_index().dropna(subset=["gflops", "top1"])
    sweeps = sweeps or {}
    in_sweep = [tp in sweeps.get(m, ()) for m, tp in zip(frame["method"], frame["trained_point"])]
    frame["curve"] = [f"{m}/{'sweep' if s else tp}" for m, tp, s in zip(frame["method"], frame["trained_point"], in_sweep)]
    frame["label"] = [str(t) if s or tp == "default" else f"{t} ({tp})"
                      for t, tp, s in zip(frame["title"], frame["trained_point"], in_sweep)]
    if "params_m" not in frame:
        frame["params_m"] = 1.0
    return frame.sort_values(["curve", "backbone", "gflops"]).reset_index(drop=True)


def plot_dataset(summary, dataset: str, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from vidbench.plugins import discover

    data = points(summary, dataset, {name: method.sweep for name, method in discover().items()})
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if data.empty:
        ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
    else:
        labels = sorted(data["label"].unique())
        palette = dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))
        for (_, _), curve in data.groupby(["curve", "backbone"], sort=False):
            if len(curve) > 1:
                ax.plot(curve["gflops"], curve["top1"], color=palette[curve["label"].iloc[0]],
                        linewidth=1.2, alpha=0.7, zorder=1)
        sizes = data["params_m"].fillna(data["params_m"].mean() if data["params_m"].notna().any() else 1.0)
        sizes = sizes.map(lambda v: float(f"{v:.3g}"))  # legible size legend
        sns.scatterplot(data=data.assign(params_m=sizes), x="gflops", y="top1", hue="label", hue_order=labels,
                        palette=palette, size="params_m", sizes=(40, 320), style="backbone", ax=ax, zorder=2,
                        edgecolor="black", linewidth=0.5)
        front = pareto_front(list(data["gflops"]), list(data["top1"]))
        data["on_front"] = data.index.isin(front)
        fx, fy = list(data["gflops"].iloc[front]), list(data["top1"].iloc[front])
        fx.append(data["gflops"].max())  # hold the best accuracy to the costliest point
        fy.append(fy[-1])
        ax.step(fx, fy, where="post", linestyle="--", color="0.3", linewidth=1.0, zorder=0, label="Pareto front")
        handles, names = ax.get_legend_handles_labels()
        names = [{"label": "method", "params_m": "params (M)"}.get(n, n) for n in names]
        ax.legend(handles, names, bbox_to_anchor=(1.02, 1.0), loc="upper left", borderaxespad=0.0,
                  fontsize="small", frameon=False)
    ax.set_xlabel("GFLOPs per video")
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.set_title(f"{dataset}: accuracy vs. cost")
    ax.grid(True, alpha=0.3)
    files = [out / f"pareto_{dataset}.png", out / f"pareto_{dataset}.pdf", out / f"pareto_{dataset}.csv"]
    fig.savefig(files[0], dpi=150, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    plt.close(fig)
    write_text(files[2], data.to_csv(index=False))  # the plotted points, for reading off exact values
    return files
