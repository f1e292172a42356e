"""`vidbench policy-plots`: AdaFuse's policy distributions (Figures 3 and 4 of the paper).

- policy_distribution.png/.pdf (Figure 3): per dataset, the share of skip / reuse / keep decisions of
  the AdaFuse point (default: `default`), with the measured reuse/keep quotient annotated beside the
  published one (analysis/paper/fig3_policy_reuse_keep.csv; synth-<name> maps to <name>).
- policy_blocks_<dataset>.png/.pdf (Figure 4): per residual block, the stacked skip / reuse / keep
  shares (the dark part of each segment: channels whose action never changes over the video), and
  each action's share with a fitted polynomial trend (3rd order, lower when there are few blocks).
- policy_distribution.csv: the numbers behind Figure 3.

Reads results/runs/<dataset>/<method>/<point>/<backbone>/seed<seed>/metrics.json (field `stats`, as
written by `vidbench.policy.PolicyClassifier.summarize`); values are means over the seeds whose
`status` is "ok" (or absent); the others are left out and counted (`left_out` in the CSV and titles).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

ACTIONS = ("skip", "reuse", "keep")
COLORS = {"skip": ("#f4a6a6", "#b22222"), "reuse": ("#ffd59e", "#d2691e"), "keep": ("#a6c8f4", "#1f4e9c")}
PUBLISHED = Path(__file__).resolve().parent / "paper" / "fig3_policy_reuse_keep.csv"


def add_arguments(parser):
    parser.add_argument("--summary", help="summary.csv from `vidbench aggregate` (orders and selects datasets)")
    parser.add_argument("--runs", required=True, help="runs directory: <dataset>/<method>/<point>/<backbone>/seed*/")
    parser.add_argument("--out", required=True, help="directory for the figures")
    parser.add_argument("--method", default="adafuse", help="the policy method whose runs are drawn")
    parser.add_argument("--point", default="default", help="operating point whose policy is drawn")
    parser.add_argument("--backbone", default=None, help="backbone (default: the first with runs, resnet_tiny first)")
    parser.add_argument("--datasets", nargs="*", default=None, help="datasets to draw (default: every one with runs)")


def published_quotients() -> dict[str, float]:
    with PUBLISHED.open() as handle:
        return {row["dataset"]: float(row["reuse_over_keep"]) for row in csv.DictReader(handle)
                if row.get("reuse_over_keep")}


def paper_dataset(name: str) -> str:
    return name[len("synth-"):] if name.startswith("synth-") else name


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def load_policies(runs, method="adafuse", point="default", backbone=None, datasets=None) -> dict[str, dict]:
    """dataset -> {"backbone", "seeds", "skip", "reuse", "keep", "reuse_over_keep", "static_share",
    "per_block": [{"block", <action>, static_<action>}]} averaged over the seeds found."""
    runs = Path(runs)
    found = {}
    names = datasets if datasets else sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    for dataset in names:
        base = runs / dataset / method / point
        if not base.is_dir():
            continue
        backbones = sorted((p.name for p in base.iterdir() if p.is_dir()), key=lambda b: (b != "resnet_tiny", b))
        if backbone:
            backbones = [b for b in backbones if b == backbone]
        for bb in backbones:
            stats, left_out = [], 0
            for file in sorted((base / bb).glob("seed*/metrics.json")):
                metrics = json.loads(file.read_text())
                data = metrics.get("stats") or {}
                if str(metrics.get("status", "ok")).strip() != "ok":
                    left_out += 1
                elif all(a in data for a in ACTIONS):
                    stats.append(data)
            if stats:
                found[dataset] = {**_average(stats, bb), "left_out": left_out}
                break
    return found


def _average(stats: list[dict], backbone: str) -> dict:
    out = {"backbone": backbone, "seeds": len(stats)}
    for key in (*ACTIONS, "static_share"):
        out[key] = _mean([s.get(key) for s in stats])
    out["reuse_over_keep"] = out["reuse"] / out["keep"] if out["keep"] else None
    blocks = []
    for i, row in enumerate(stats[0].get("per_block") or []):
        rows = [s["per_block"][i] for s in stats if len(s.get("per_block") or []) > i]
        merged = {"block": row.get("block", str(i))}
        for key in (*ACTIONS, *(f"static_{a}" for a in ACTIONS)):
            merged[key] = _mean([r.get(key) for r in rows]) or 0.0
        blocks.append(merged)
    out["per_block"] = blocks
    return out


def summary_datasets(summary) -> list[str]:
    if not summary or not Path(summary).is_file():
        return []
    with open(summary) as handle:
        seen = []
        for row in csv.DictReader(handle):
            if row.get("dataset") and row["dataset"] not in seen:
                seen.append(row["dataset"])
    return seen


def trend(x, y, degree: int = 3):
    """Least-squares polynomial of order min(degree, len(x) - 1) evaluated on a fine grid."""
    import numpy as np

    order = max(0, min(degree, len(x) - 1))
    coeffs = np.polyfit(x, y, order)
    grid = np.linspace(min(x), max(x), 100) if len(x) > 1 else np.asarray(x, dtype=float)
    return grid, np.polyval(coeffs, grid), order


def _save(fig, out: Path, stem: str) -> list[Path]:
    files = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for file in files:
        fig.savefig(file, dpi=150, bbox_inches="tight")
    return files


def plot_distribution(policies: dict, out: Path, point: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    published = published_quotients()
    names = list(policies)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(names) + 1.5), 4.2))
    if not names:
        ax.text(0.5, 0.5, "no AdaFuse runs yet", ha="center", va="center", transform=ax.transAxes)
    x = np.arange(len(names))
    width = 0.26
    for k, action in enumerate(ACTIONS):
        values = [100 * (policies[d][action] or 0.0) for d in names]
        ax.bar(x + (k - 1) * width, values, width, label=action.capitalize(), color=COLORS[action][1])
    for i, dataset in enumerate(names):
        quotient = policies[dataset]["reuse_over_keep"]
        text = f"R/K {quotient:.3f}" if quotient is not None else "R/K -"
        paper = published.get(paper_dataset(dataset))
        if paper is not None:
            text += f"\n(paper {paper:.3f})"
        top = max(100 * (policies[dataset][a] or 0.0) for a in ACTIONS)
        ax.text(i, top + 2, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("share of channel decisions (%)")
    ax.set_ylim(0, 118)
    backbones = sorted({p["backbone"] for p in policies.values()})
    ax.set_title(f"AdaFuse policy per dataset (point {point}; {', '.join(backbones) or '-'})")
    ax.legend(loc="upper right", ncols=3, fontsize=8)
    files = _save(fig, out, "policy_distribution")
    plt.close(fig)
    with (out / "policy_distribution.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "backbone", "seeds", "left_out", *ACTIONS, "reuse_over_keep",
                         "paper_reuse_over_keep", "static_share"])
        for d in names:
            p = policies[d]
            writer.writerow([d, p["backbone"], p["seeds"], p.get("left_out", 0), *(p[a] for a in ACTIONS),
                             p["reuse_over_keep"], published.get(paper_dataset(d), ""), p["static_share"]])
    return files


def plot_blocks(dataset: str, policy: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    blocks = policy["per_block"]
    fig, (stack, lines) = plt.subplots(1, 2, figsize=(max(8.0, 0.5 * len(blocks) + 6), 4.0))
    x = np.arange(len(blocks))
    labels = [b["block"] for b in blocks]
    bottom = np.zeros(len(blocks))
    for action in ACTIONS:
        share = np.array([100 * b[action] for b in blocks])
        static = np.array([100 * b[f"static_{action}"] for b in blocks])
        light, dark = COLORS[action]
        stack.bar(x, share, 0.8, bottom=bottom, color=light, label=action.capitalize())
        stack.bar(x, static, 0.8, bottom=bottom, color=dark, label=f"{action.capitalize()} (unchanged over frames)")
        bottom += share
    stack.set_ylabel("share of channels (%)")
    stack.set_ylim(0, 100)
    stack.set_title("stacked per block (dark: static over the video)", fontsize=9)
    for action in ACTIONS:
        share = [100 * b[action] for b in blocks]
        lines.plot(x, share, "o", color=COLORS[action][1], label=action.capitalize())
        if blocks:
            grid, fitted, order = trend(list(x), share)
            lines.plot(grid, fitted, "--", color="black", linewidth=1)
    lines.set_ylabel("share of channels (%)")
    lines.set_title("per action, with polynomial trend (dashed)", fontsize=9)
    for axis in (stack, lines):
        axis.set_xticks(x, labels, rotation=60 if len(blocks) > 6 else 0, fontsize=7)
        axis.set_xlabel("residual block")
    handles, names = stack.get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="lower center", ncols=3, bbox_to_anchor=(0.5, -0.12))
    lines.legend(fontsize=7)
    left_out = f", {policy['left_out']} left out: status not ok" if policy.get("left_out") else ""
    fig.suptitle(f"AdaFuse policy per block: {dataset} ({policy['backbone']}, {policy['seeds']} seed(s){left_out})")
    files = _save(fig, out, f"policy_blocks_{dataset}")
    plt.close(fig)
    return files


def run(args):
    datasets = args.datasets or summary_datasets(args.summary) or None
    policies = load_policies(args.runs, args.method, args.point, args.backbone, datasets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = plot_distribution(policies, out, args.point)
    for dataset, policy in policies.items():
        files += plot_blocks(dataset, policy, out)
    print(f"{len(policies)} dataset(s): " + ", ".join(str(f) for f in files if f.suffix == ".png"))
    return files
