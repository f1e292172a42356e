"""`vidbench claims`: the papers' qualitative claims (analysis/paper/claims.yaml) checked on the runs.

For each claim, dataset and backbone: the measured effect (a paired difference, a ratio, a difference
between datasets or a trend, see claims.yaml) with its 95% interval over seeds, and a verdict:
- holds: the whole interval lies on the claimed side of the threshold;
- does not hold: the whole interval lies on the other side (or on the threshold);
- not enough seeds: fewer than 2 seeds, or an interval that straddles the threshold (the seeds run
  cannot decide either way);
- not run: a run the claim needs is missing (or its status is not ok).
Writes claims.csv (every number), claims.md and claims.tex.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from analysis import stats
from analysis.aggregate import excluded_note, usable
from analysis.render import write_table
from analysis.tables import paper_dataset
from vidbench.errors import InputError

CLAIMS_FILE = Path(__file__).resolve().parent / "paper" / "claims.yaml"
KINDS = ("paired", "ratio", "across", "trend")
HOLDS, FAILS, UNDECIDED, NOT_RUN = "holds", "does not hold", "not enough seeds", "not run"
TITLE = "The papers' claims, checked on the reproduced runs"
COLUMNS = ["id", "claim", "source", "dataset", "backbone", "effect", "threshold", "n", "estimate", "sd", "lo",
           "hi", "p", "verdict", "why", "runs", "paper"]


def add_arguments(parser):
    parser.add_argument("--summary", required=True, help="summary.csv from `vidbench aggregate`")
    parser.add_argument("--claims", default=str(CLAIMS_FILE), help="claims YAML (default: analysis/paper/claims.yaml)")
    parser.add_argument("--out", required=True, help="directory for claims.md/.csv/.tex")


def run(args):
    from analysis.aggregate import read_summary

    claims = load_claims(args.claims)
    frame, note = check_claims(claims, read_summary(args.summary))
    write_table(args.out, "claims", TITLE, note, frame, display(frame),
                text_columns=("claim", "source", "dataset", "backbone", "effect", "verdict", "why", "paper"))
    print(f"{len(claims)} claims, {len(frame)} rows: " + ", ".join(
        f"{count} {verdict}" for verdict, count in frame["verdict"].value_counts().items()) + f" -> {args.out}/claims.*")


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    source: str
    paper: str
    datasets: tuple
    test: dict

    @property
    def side(self) -> tuple[str, float]:
        """('greater' or 'less', threshold)."""
        return ("greater", float(self.test["greater"])) if "greater" in self.test else ("less", float(self.test["less"]))


def _fail(path, index, message, expected):
    raise InputError(path, f"claims[{index}]: {message}", expected=expected)


def load_claims(path) -> list[Claim]:
    """The claims file, checked: every claim has its keys, a known test kind, runs and one threshold."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputError(path, f"cannot read claims: {err.strerror}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(path, f"malformed YAML: {getattr(err, 'problem', err)}",
                         line=mark.line + 1 if mark else None) from err
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise InputError(path, "no list of claims", expected="claims: [{id, claim, source, paper, datasets, test}]")
    claims, seen = [], set()
    for i, entry in enumerate(data["claims"]):
        claims.append(_claim(path, i, entry))
        if claims[-1].id in seen:
            _fail(path, i, f"duplicate id {claims[-1].id!r}", "one entry per id")
        seen.add(claims[-1].id)
    return claims


def _claim(path, i, entry) -> Claim:
    keys = ("id", "claim", "source", "paper", "datasets", "test")
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        _fail(path, i, f"is {entry!r}", f"a mapping with keys {list(keys)}")
    test = entry["test"]
    if not isinstance(test, dict) or test.get("kind") not in KINDS:
        _fail(path, i, f"test is {test!r}", f"test.kind one of {list(KINDS)}")
    needed = {"paired": ("a", "b"), "ratio": ("a", "b"), "across": ("a", "reference"), "trend": ("a", "by")}
    missing = [k for k in ("metric", *needed[test["kind"]]) if k not in test]
    if missing:
        _fail(path, i, f"test of kind {test['kind']} lacks {missing}", f"keys metric, {', '.join(needed[test['kind']])}")
    if ("greater" in test) == ("less" in test) or not isinstance(test.get("greater", test.get("less")), (int, float)):
        _fail(path, i, f"test is {test!r}", "exactly one of greater: <number> or less: <number>")
    if not isinstance(entry["datasets"], list) or not entry["datasets"]:
        _fail(path, i, f"datasets is {entry['datasets']!r}", "a list of dataset names")
    return Claim(str(entry["id"]), str(entry["claim"]), str(entry["source"]), str(entry["paper"]),
                 tuple(map(str, entry["datasets"])), dict(test))


def _run_name(ref: str) -> tuple[str, str]:
    method, _, point = str(ref).partition("/")
    return method, point or "default"


def _values(summary, dataset, backbone, ref, metric) -> dict[int, float]:
    """{seed: metric} of one run (its trained point's row, not an evaluation-time point)."""
    import pandas as pd

    method, point = _run_name(ref)
    rows = summary[(summary["dataset"] == dataset) & (summary["backbone"] == backbone)
                   & (summary["method"] == method) & (summary["point"] == point)]
    if "trained_point" in rows.columns:
        rows = rows[rows["trained_point"].fillna(rows["point"]) == rows["point"]]
    if metric not in rows.columns:
        return {}
    values = pd.to_numeric(rows[metric], errors="coerce")
    return {int(s): float(v) for s, v in zip(rows["seed"], values) if math.isfinite(v)}


def _trend(summary, dataset, backbone, claim) -> dict[int, float]:
    """{seed: Kendall tau between `by` and the metric over the run's evaluation sweep}."""
    method, point = _run_name(claim.test["a"])
    by, metric = claim.test["by"], claim.test["metric"]
    rows = summary[(summary["dataset"] == dataset) & (summary["backbone"] == backbone)
                   & (summary["method"] == method)]
    if "trained_point" not in rows.columns or by not in rows.columns:
        return {}
    rows = rows[(rows["trained_point"] == point) & rows[by].notna()]
    taus = {int(seed): stats.kendall(group[by], group[metric])[0] for seed, group in rows.groupby("seed")}
    return {seed: tau for seed, tau in taus.items() if math.isfinite(tau)}


def effect(claim: Claim, summary, dataset: str, backbone: str) -> tuple[stats.Estimate, str]:
    """The measured effect of a claim on one dataset and backbone, and the runs it compares."""
    test, metric = claim.test, claim.test["metric"]
    a = _values(summary, dataset, backbone, test["a"], metric)
    if test["kind"] == "trend":
        return stats.describe(_trend(summary, dataset, backbone, claim).values()), f"{test['a']} sweep"
    if test["kind"] == "across":
        reference = next((d for d in summary["dataset"].unique() if paper_dataset(d) == test["reference"]), None)
        b = _values(summary, reference, backbone, test["a"], metric) if reference else {}
        return stats.welch(list(a.values()), list(b.values())), f"{test['a']} on {dataset} vs {reference}"
    b = _values(summary, dataset, backbone, test["b"], metric)
    compare = stats.paired if test["kind"] == "paired" else stats.paired_ratio
    return compare(a, b), f"{test['a']} vs {test['b']}"


def verdict(estimate: stats.Estimate, side: str, threshold: float) -> tuple[str, str]:
    """(verdict, why) from the effect's 95% interval and the claimed side of the threshold."""
    if estimate.n == 0:
        return NOT_RUN, "a run the claim needs is missing"
    if estimate.n < 2:
        return UNDECIDED, "one seed: no interval"
    lo, hi = estimate.lo, estimate.hi
    interval = f"[{stats.number(lo)}, {stats.number(hi)}]"
    claimed = lo > threshold if side == "greater" else hi < threshold
    opposite = hi <= threshold if side == "greater" else lo >= threshold
    if claimed:
        return HOLDS, f"{interval} lies {'above' if side == 'greater' else 'below'} {threshold:g}"
    if opposite:
        return FAILS, f"{interval} does not lie {'above' if side == 'greater' else 'below'} {threshold:g}"
    return UNDECIDED, f"{interval} includes {threshold:g}"


EFFECTS = {"paired": "{a} - {b}", "ratio": "{a} / {b}", "across": "{a}: dataset - {reference}",
           "trend": "Kendall tau({by}, metric)"}


def _effect_name(claim: Claim) -> str:
    return f"{claim.test['metric']}: " + EFFECTS[claim.test["kind"]].format(**claim.test)


def check_claims(claims: list[Claim], summary):
    """(one row per claim x dataset x backbone, the note)."""
    import pandas as pd

    ok, excluded = usable(summary)
    records = []
    for claim in claims:
        side, threshold = claim.side
        for name in claim.datasets:
            runs = ok[ok["dataset"].map(paper_dataset) == name]
            pairs = sorted({(d, b) for d, b in zip(runs["dataset"], runs["backbone"])}) or [(name, "")]
            for dataset, backbone in pairs:
                est, compared = effect(claim, ok, dataset, backbone) if backbone else (stats.Estimate(0), "")
                outcome, why = verdict(est, side, threshold)
                records.append({"id": claim.id, "claim": claim.claim, "source": claim.source, "dataset": dataset,
                                "backbone": backbone, "effect": _effect_name(claim),
                                "threshold": f"{'>' if side == 'greater' else '<'} {threshold:g}", "n": est.n,
                                "estimate": est.mean, "sd": est.sd, "lo": est.lo, "hi": est.hi, "p": est.p,
                                "verdict": outcome, "why": why, "runs": compared, "paper": claim.paper})
    frame = pd.DataFrame(records, columns=COLUMNS)
    return frame, _note(frame, excluded)


def _note(frame, excluded) -> str:
    counts = ", ".join(f"{frame['verdict'].eq(v).sum()} {v}" for v in (HOLDS, FAILS, UNDECIDED, NOT_RUN))
    lines = [
        f"{len(frame)} checks: {counts}.",
        "Each claim of analysis/paper/claims.yaml, per dataset and backbone. effect: what is measured (paired "
        "over common seeds for a - b and a / b; Welch's unpaired test across datasets; Kendall's tau over an "
        "evaluation sweep, per seed); measured: estimate [95% Student-t interval] over n seeds (or seed pairs), "
        "p: two-sided p-value of no effect (a difference of 0, a ratio of 1).",
        "verdict: holds = the whole interval lies beyond the threshold on the claimed side; does not hold = it "
        "lies entirely on the other side; not enough seeds = n < 2, or the interval includes the threshold "
        "(more seeds could decide); not run = a run the claim needs is missing.",
        "Synthetic datasets (synth-*) only stand in for the real ones: a claim checked there says whether the "
        "harness reproduces the paper's qualitative finding on data built to show it, not on the real data.",
        excluded_note(excluded),
    ]
    return "\n".join(filter(None, lines))


def display(frame):
    shown = frame[["claim", "source", "dataset", "backbone", "effect", "threshold"]].copy()
    shown["measured"] = [_measured_text(row) for _, row in frame.iterrows()]
    shown["verdict"] = frame["verdict"]
    shown["why"] = frame["why"]
    shown["paper"] = frame["paper"]
    return shown.astype(str)


def _measured_text(row) -> str:
    est = stats.Estimate(int(row["n"]), row["estimate"], row["sd"], row["lo"], row["hi"], row["p"])
    if est.n == 0:
        return ""
    if est.n < 2:
        return f"{stats.number(est.mean)} (n = 1)"
    measured = f"{stats.number(est.mean)} [{stats.number(est.lo)}, {stats.number(est.hi)}], n = {est.n}"
    return ", ".join(filter(None, [measured, stats.p_clause(est.p)]))
