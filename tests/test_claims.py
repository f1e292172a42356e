"""analysis.claims: verdicts from a hand-made summary, the claims file's checks, the project's claims."""
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from analysis import aggregate, claims
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
