"""analysis.claims: verdicts from a hand-made summary, the claims file's checks, the project's claims."""
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from analysis import aggregate, claims, stats
from vidbench.errors import InputError
from vidbench.plugins import discover


def row(dataset, method, seed, top1, gflops=1.0, point="default", status="ok", **extra):
    return {"dataset": dataset, "method": method, "point": point, "trained_point": extra.pop("trained_point", point),
            "backbone": "resnet_tiny", "seed": seed, "status": status, "top1": top1, "gflops": gflops, **extra}


@pytest.fixture
def summary():
    rows = []
    for seed, (tsn, ada, lstm) in enumerate([(10, 40, 8), (11, 41, 8), (12, 45, 8)]):
        rows += [row("synth-sthv1", "tsn", seed, tsn, 2.0), row("synth-sthv1", "adafuse", seed, ada, 1.5,
                     reuse_over_keep=1.2 + seed / 10), row("synth-sthv1", "lstm", seed, lstm, 2.0),
                 row("synth-minikinetics", "adafuse", seed, 90, 1.5, reuse_over_keep=0.8 + seed / 10)]
    # a diverged TSN seed whose AdaFuse partner is fine: counted, it would turn adafuse - tsn negative
    rows.append(row("synth-sthv1", "tsn", 3, 99, 2.0, status="diverged: loss is nan"))
    rows.append(row("synth-sthv1", "adafuse", 3, 50, 1.5))
    rows.append(row("synth-sthv1", "random", 0, 30, 1.5))
    sweeps = {0: [(0.0, 20), (0.5, 30), (1.01, 40)], 1: [(0.0, 20), (0.5, 35), (1.01, 30)]}
    for seed, points in sweeps.items():
        rows.append(row("synth-sthv1", "earlyexit", seed, 38, 1.0))
        rows += [row("synth-sthv1", "earlyexit", seed, top1, point=f"thr {t}", trained_point="default", threshold=t)
                 for t, top1 in points]
    return pd.DataFrame(rows)


def claim(kind="paired", datasets=("sthv1",), **test):
    return claims.Claim("c", "a claim", "Table 1", "as printed", tuple(datasets), {"kind": kind, "metric": "top1", **test})


def check(one, summary):
    frame, note = claims.check_claims([one], summary)
    return frame.iloc[0], note


def test_claim_that_holds_and_status_left_out(summary):
    # adafuse - tsn per seed: 30, 30, 33 (tsn's seed 3 diverged: left out) -> mean 31, sd 1.732,
    # half-width 4.3027 * 1.732 / sqrt(3) = 4.303
    result, note = check(claim(a="adafuse", b="tsn", greater=0), summary)
    assert result["verdict"] == claims.HOLDS and result["n"] == 3
    assert result["estimate"] == pytest.approx(31.0)
    assert result["lo"] == pytest.approx(26.697, abs=1e-3) and result["hi"] == pytest.approx(35.303, abs=1e-3)
    assert "synth-sthv1/tsn/default/resnet_tiny/seed3 (diverged: loss is nan)" in note


def test_claim_that_does_not_hold_is_reported(summary):
    # lstm - tsn per seed: -2, -3, -4 -> mean -3, sd 1, half-width 4.3027 / sqrt(3) = 2.484 -> [-5.48, -0.52]
    result, _ = check(claim(a="lstm", b="tsn", greater=0), summary)
    assert result["verdict"] == claims.FAILS
    assert result["lo"] == pytest.approx(-5.484, abs=1e-3) and result["hi"] == pytest.approx(-0.516, abs=1e-3)
    assert result["why"] == "[-5.48, -0.52] does not lie above 0"


def test_ratio_one_seed_missing_run_and_straddling_trend(summary):
    ratio, _ = check(claim("ratio", a="adafuse", b="tsn", metric="gflops", less=0.8), summary)
    assert ratio["verdict"] == claims.HOLDS and ratio["estimate"] == pytest.approx(0.75)   # exact: 1.5 / 2
    one, _ = check(claim(a="adafuse", b="random", greater=0), summary)
    assert one["verdict"] == claims.UNDECIDED and one["n"] == 1 and one["why"] == "one seed: no interval"
    missing, _ = check(claim(a="adafuse", b="cgnet", greater=0), summary)
    assert missing["verdict"] == claims.NOT_RUN
    absent, _ = check(claim(a="adafuse", b="tsn", greater=0, datasets=["jester"]), summary)
    assert absent["verdict"] == claims.NOT_RUN and absent["dataset"] == "jester"
    # Kendall tau per seed: 1 (rising) and 1/3 (one pair falls): mean 2/3, sd 0.471, half-width
    # 12.706 * 0.471 / sqrt(2) = 4.236: the interval includes 0
    trend, _ = check(claim("trend", a="earlyexit", by="threshold", greater=0), summary)
    assert trend["estimate"] == pytest.approx(2 / 3) and trend["verdict"] == claims.UNDECIDED
    assert "includes 0" in trend["why"]


def test_across_datasets_welch(summary):
    # reuse/keep 1.2, 1.3, 1.4 vs 0.8, 0.9, 1.0: difference 0.4, se sqrt(0.01/3 * 2) = 0.0816, df 4,
    # half-width 2.7764 * 0.0816 = 0.227
    result, _ = check(claim("across", a="adafuse", metric="reuse_over_keep", reference="minikinetics", greater=0),
                      summary)
    assert result["verdict"] == claims.HOLDS and result["estimate"] == pytest.approx(0.4)
    assert result["lo"] == pytest.approx(0.173, abs=1e-3) and result["hi"] == pytest.approx(0.627, abs=1e-3)


def test_claims_written_from_a_summary(tmp_path, summary):
    path = tmp_path / "summary.csv"
    summary.to_csv(path, index=False)
    spec = {"claims": [{"id": "lstm-tsn", "claim": "LSTM beats TSN", "source": "Table 1", "paper": "28.4 vs 14.8",
                        "datasets": ["sthv1"], "test": {"kind": "paired", "metric": "top1", "a": "lstm", "b": "tsn",
                                                        "greater": 0}}]}
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(spec))
    claims.run(SimpleNamespace(summary=str(path), claims=str(tmp_path / "claims.yaml"), out=str(tmp_path / "out")))
    md = (tmp_path / "out" / "claims.md").read_text()
    assert "| LSTM beats TSN | Table 1 | synth-sthv1 |" in md and "| does not hold |" in md
    assert "1 checks: 0 holds, 1 does not hold" in md
    csv = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert list(csv["verdict"]) == ["does not hold"]
    assert "\\toprule" in (tmp_path / "out" / "claims.tex").read_text()


def test_bad_claims_file_names_file_and_entry(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [{"id": "x", "claim": "c", "source": "s", "paper": "p",
                                                "datasets": ["sthv1"], "test": {"kind": "paired", "metric": "top1",
                                                                                "a": "tsm", "b": "tsn"}}]}))
    with pytest.raises(InputError, match=r"claims.yaml: claims\[0\]: .*exactly one of greater"):
        claims.load_claims(path)
    path.write_text("claims: [ {id: x,")
    with pytest.raises(InputError, match="claims.yaml:.*malformed YAML"):
        claims.load_claims(path)


def test_project_claims_name_real_methods_and_points():
    found = discover()
    for one in claims.load_claims(claims.CLAIMS_FILE):
        for ref in (one.test["a"], one.test.get("b")):
            if ref is None:
                continue
            method, point = claims._run_name(ref)
            assert method in found and point in found[method].operating_points, (one.id, ref)


def test_aggregate_carries_status(tmp_path):
    run = tmp_path / "metrics.json"
    base = {"run": {"dataset": "d", "method": "m", "point": "p", "backbone": "b", "seed": 0}, "top1": 1, "gflops": 1}
    run.write_text(pd.Series(base).to_json())
    assert aggregate.collect([run])[0]["status"] == "ok"              # absent: ok
    run.write_text(pd.Series({**base, "status": "degenerate: one class"}).to_json())
    assert aggregate.collect([run])[0]["status"] == "degenerate: one class"
    run.write_text(pd.Series({**base, "status": 3}).to_json())
    with pytest.raises(InputError, match="metrics.json: status is 3"):
        aggregate.collect([run])


def test_aggregate_carries_the_best_epoch(tmp_path):
    run = tmp_path / "metrics.json"
    base = {"run": {"dataset": "d", "method": "m", "point": "p", "backbone": "b", "seed": 0}, "top1": 40.0, "gflops": 1}
    run.write_text(pd.Series({**base, "best": {"epoch": 3, "top1": 55.5, "note": "..."}}).to_json())
    [row] = aggregate.collect([run])
    assert (row["top1"], row["top1_best"], row["best_epoch"]) == (40.0, 55.5, 3)
    run.write_text(pd.Series({**base, "best": None}).to_json())      # trained without validation
    [row] = aggregate.collect([run])
    assert row["best_epoch"] is None and math.isnan(row["top1_best"])


def test_verdict_on_and_beside_the_threshold_on_both_sides():
    def interval(lo, hi):
        return stats.Estimate(3, (lo + hi) / 2, 0.5, lo, hi)

    assert claims.verdict(interval(0.5, 2.0), "greater", 0) == (claims.HOLDS, "[0.50, 2.00] lies above 0")
    assert claims.verdict(interval(0.0, 2.0), "greater", 0) == (claims.UNDECIDED, "[0.00, 2.00] includes 0")
    assert claims.verdict(interval(-2.0, 0.0), "greater", 0) == (claims.FAILS, "[-2.00, 0.00] does not lie above 0")
    assert claims.verdict(interval(0.5, 0.7), "less", 0.8) == (claims.HOLDS, "[0.50, 0.70] lies below 0.8")
    assert claims.verdict(interval(0.6, 0.8), "less", 0.8) == (claims.UNDECIDED, "[0.60, 0.80] includes 0.8")
    assert claims.verdict(interval(0.8, 0.9), "less", 0.8) == (claims.FAILS, "[0.80, 0.90] does not lie below 0.8")
    assert claims.verdict(stats.Estimate(0), "less", 1) == (claims.NOT_RUN, "a run the claim needs is missing")


def test_an_evaluation_point_is_no_run_of_its_own(summary):
    # earlyexit's "thr 0.5" rows are points of the sweep of its default run: a claim naming it has no run
    result, _ = check(claim(a="earlyexit/thr 0.5", b="tsn", greater=0), summary)
    assert result["verdict"] == claims.NOT_RUN
    # a summary whose trained rows leave trained_point empty still finds them; a cell that is no number is no value
    plain = summary.copy()
    plain.loc[plain["point"] == "default", "trained_point"] = None
    plain["note"] = "x"
    assert check(claim(a="adafuse", b="tsn", greater=0), plain)[0]["n"] == 3
    assert check(claim(a="adafuse", b="tsn", metric="note", greater=0), plain)[0]["verdict"] == claims.NOT_RUN


def test_trend_takes_one_run_sweep_on_its_own_dataset():
    sweeps = {("synth-sthv1", "default", 0): [(0.0, 20), (0.5, 30), (1.01, 40)],
              ("synth-sthv1", "default", 1): [(0.0, 20), (0.5, 35), (0.7, 30), (1.01, 40)],
              ("synth-sthv1", "other", 0): [(0.0, 40), (0.5, 30), (1.01, 20)],     # another trained point
              ("synth-sthv2", "default", 0): [(0.0, 40), (0.5, 30), (1.01, 20)]}   # another dataset
    rows = [row(dataset, "earlyexit", seed, top1, point=f"thr {t}", trained_point=trained, threshold=t)
            for (dataset, trained, seed), points in sweeps.items() for t, top1 in points]
    summary = pd.DataFrame(rows)
    # tau 1 (seed 0) and 4/6 (seed 1: one of six pairs falls); their p-values are 1/3 and 1/3
    result, _ = check(claim("trend", a="earlyexit", by="threshold", greater=0), summary)
    assert result["n"] == 2 and result["estimate"] == pytest.approx(5 / 6)
    assert check(claim("trend", a="earlyexit", by="nothing", greater=0), summary)[0]["verdict"] == claims.NOT_RUN


def test_no_claims_give_an_empty_table_with_every_column(summary):
    frame, note = claims.check_claims([], summary)
    assert frame.empty and list(frame.columns) == claims.COLUMNS and note.startswith("0 checks: 0 holds")


def test_across_without_the_reference_dataset_is_not_run(summary):
    result, _ = check(claim("across", a="adafuse", metric="reuse_over_keep", reference="jester", greater=0), summary)
    assert result["verdict"] == claims.NOT_RUN and result["n"] == 0


def test_every_field_of_the_claims_files(tmp_path, summary):
    path = tmp_path / "summary.csv"
    summary.to_csv(path, index=False)
    entry = {"claim": "c", "source": "Table 1", "paper": "as printed", "datasets": ["sthv1"]}
    spec = {"claims": [
        {**entry, "id": "cheaper", "claim": "AdaFuse costs less", "datasets": ["sthv1", "jester"],
         "test": {"kind": "ratio", "metric": "gflops", "a": "adafuse", "b": "tsn", "less": 0.8}},
        {**entry, "id": "lstm", "claim": "LSTM_wins",
         "test": {"kind": "paired", "metric": "top1", "a": "lstm", "b": "tsn", "greater": 0}},
        {**entry, "id": "one",
         "test": {"kind": "paired", "metric": "top1", "a": "adafuse", "b": "random", "greater": 0}},
        {**entry, "id": "trend", "test": {"kind": "trend", "metric": "top1", "a": "earlyexit", "by": "threshold",
                                          "greater": 0}}]}
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(spec))
    claims.run(SimpleNamespace(summary=str(path), claims=str(tmp_path / "claims.yaml"), out=str(tmp_path / "out")))

    csv = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert list(csv.columns) == claims.COLUMNS
    cheaper, absent, lstm = (csv.fillna("").iloc[i].to_dict() for i in range(3))
    # GFLOPs 1.5 / 2 on every seed: exact, p 0 against a ratio of 1
    assert cheaper == {"id": "cheaper", "claim": "AdaFuse costs less", "source": "Table 1", "dataset": "synth-sthv1",
                       "backbone": "resnet_tiny", "effect": "gflops: adafuse / tsn", "threshold": "< 0.8", "n": 3,
                       "estimate": 0.75, "sd": 0, "lo": 0.75, "hi": 0.75, "p": 0, "verdict": claims.HOLDS,
                       "why": "[0.75, 0.75] lies below 0.8", "runs": "adafuse vs tsn", "paper": "as printed"}
    assert [absent[k] for k in ("dataset", "backbone", "runs", "verdict")] == ["jester", "", "", claims.NOT_RUN]
    assert (lstm["threshold"], lstm["estimate"], lstm["sd"]) == ("> 0", -3, 1)

    md = (tmp_path / "out" / "claims.md").read_text().splitlines()
    assert md[0] == f"# {claims.TITLE}" and "> 5 checks: 1 holds, 1 does not hold, 2 not enough seeds, 1 not run." in md
    assert "> Each claim of analysis/paper/claims.yaml, per dataset and backbone. effect: what is measured (paired " \
           "over common seeds for a - b and a / b; Welch's unpaired test across datasets; Kendall's tau over an " \
           "evaluation sweep, per seed); measured: estimate [95% Student-t interval] over n seeds (or seed pairs), " \
           "p: two-sided p-value of no effect (a difference of 0, a ratio of 1)." in md
    assert "> Synthetic datasets (synth-*) only stand in for the real ones: a claim checked there says whether the " \
           "harness reproduces the paper's qualitative finding on data built to show it, not on the real data." in md
    assert "| AdaFuse costs less | Table 1 | jester |  | gflops: adafuse / tsn | < 0.8 |  | not run |" in "\n".join(md)
    assert "> verdict: holds = the whole interval lies beyond the threshold on the claimed side; does not hold = it " \
           "lies entirely on the other side; not enough seeds = n < 2, or the interval includes the threshold " \
           "(more seeds could decide); not run = a run the claim needs is missing." in md
    header = md.index("| claim | source | dataset | backbone | effect | threshold | measured | verdict | why | paper |")
    assert md[header + 2] == ("| AdaFuse costs less | Table 1 | synth-sthv1 | resnet_tiny | gflops: adafuse / tsn | "
                              "< 0.8 | 0.75 [0.75, 0.75], n = 3, p < 0.001 | holds | [0.75, 0.75] lies below 0.8 | "
                              "as printed |")
    # lstm - tsn: -2, -3, -4: t = -3 / (1 / sqrt 3) = -5.196 on 2 df, p = 1 - 5.196 / sqrt(2 + 27) = 0.035
    assert any("| -3.00 [-5.48, -0.52], n = 3, p = 0.035 | does not hold |" in line for line in md)
    assert any("| 10.00 (n = 1) | not enough seeds | one seed: no interval |" in line for line in md)
    # Kendall tau 1 and 1/3 per seed: mean 0.667, half-width 4.236 (a trend has no p-value of its own)
    assert any("| 0.67 [-3.57, 4.90], n = 2 | not enough seeds |" in line for line in md)
    tex = (tmp_path / "out" / "claims.tex").read_text()
    assert "\\begin{tabular}{lllllrrlll}" in tex and "LSTM\\_wins" in tex and f"\\caption{{{claims.TITLE}}}" in tex


GOOD = {"id": "x", "claim": "c", "source": "s", "paper": "p", "datasets": ["sthv1"],
        "test": {"kind": "paired", "metric": "top1", "a": "tsm", "b": "tsn", "greater": 0}}


@pytest.mark.parametrize("entries, message", [
    ([["not", "a", "mapping"]], r"claims\[0\]: is \['not', 'a', 'mapping'\]"),
    ([{k: v for k, v in GOOD.items() if k != "paper"}], r"claims\[0\]: is .*\(expected a mapping with keys"),
    ([GOOD, {**GOOD, "id": "y", "test": "paired"}], r"claims\[1\]: test is 'paired'"),
    ([{**GOOD, "test": {**GOOD["test"], "kind": "median"}}], r"claims\[0\]: test is .*test.kind one of"),
    ([{**GOOD, "test": {"kind": "across", "metric": "top1", "a": "tsm", "greater": 0}}],
     r"claims\[0\]: test of kind across lacks \['reference'\].*keys metric, a, reference"),
    ([{**GOOD, "test": {**GOOD["test"], "less": 1}}], r"claims\[0\]: .*exactly one of greater"),
    ([{**GOOD, "test": {**GOOD["test"], "greater": "zero"}}], r"claims\[0\]: .*exactly one of greater"),
    ([{**GOOD, "datasets": []}], r"claims\[0\]: datasets is \[\].*a list of dataset names"),
    ([{**GOOD, "datasets": "sthv1"}], r"claims\[0\]: datasets is 'sthv1'"),
    ([GOOD, {**GOOD, "claim": "again"}], r"claims\[1\]: duplicate id 'x'.*one entry per id"),
])
def test_each_bad_claim_is_named_with_what_was_expected(tmp_path, entries, message):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": entries}))
    with pytest.raises(InputError, match=r"claims.yaml: " + message):
        claims.load_claims(path)


def test_claims_file_shape_and_the_line_of_bad_yaml(tmp_path):
    path = tmp_path / "claims.yaml"
    for text in ("claims: {id: x}\n", "- a list\n"):
        path.write_text(text)
        with pytest.raises(InputError, match="claims.yaml: no list of claims"):
            claims.load_claims(path)
    path.write_text("claims:\n  - id: x\n    claim: [unclosed\n")
    with pytest.raises(InputError, match=r"claims.yaml:4: malformed YAML"):
        claims.load_claims(path)
    path.write_text("claims: \x07\n")                  # a reader error: no line to point at
    with pytest.raises(InputError, match=r"claims.yaml: malformed YAML"):
        claims.load_claims(path)
    path.write_text(yaml.safe_dump({"claims": [GOOD]}))
    assert claims.load_claims(path) == [claims.Claim("x", "c", "s", "p", ("sthv1",), GOOD["test"])]
