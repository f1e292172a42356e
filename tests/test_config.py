"""The workflow config: schema validation, defaults, names, resolve_run precedence, run lists, dry run."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vidbench import config as cfg
from vidbench.errors import InputError
from vidbench.plugins import discover

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "workflow" / "config" / "default.yaml"
TEST = ROOT / "workflow" / "config" / "test.yaml"

MANIFESTS = {
    "tsn": {"title": "TSN", "citation": "Wang et al. 2016", "paper_label": "TSN", "defaults": {"dropout": 0.8}},
    "adafuse": {"title": "AdaFuse", "citation": "Meng et al. 2021", "paper_label": "AdaFuse-TSN",
                "defaults": {"lam": 0.1, "hidden": 512, "tau": 0.67},
                "operating_points": {"default": {}, "lam0.05": {"lam": 0.05, "hidden": 256}, "skip-only": {},
                                     "reuse-only": {}, "lam-hi": {"lam": 0.2}}},
    "random": {"title": "Random policy", "citation": "Meng et al. 2021", "paper_label": "Random",
               "requires": ["adafuse"]},
    "lstm": {"title": "LSTM", "citation": "Meng et al. 2021", "paper_label": "LSTM"},
    # the other methods default.yaml names (its per-method seeds and the runs it leaves out)
    **{name: {"title": name, "citation": "-"} for name in ("tsm", "cgnet", "threshold", "earlyexit",
                                                           "earlyexit_frames", "earlyexit_msdnet")},
}


def write_method(root: Path, name: str, manifest: dict) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "method.yaml").write_text(yaml.safe_dump(manifest))
    (root / name / "model.py").write_text("def build(cfg, *, backbone, num_classes, num_segments):\n    return None\n")


@pytest.fixture
def methods(tmp_path, monkeypatch):
    root = tmp_path / "methods"
    for name, manifest in MANIFESTS.items():
        write_method(root, name, manifest)
    monkeypatch.setenv("VIDBENCH_METHODS", str(root))
    return root


def write_config(tmp_path, data, name="config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_default_config_validates(methods):
    config = cfg.load_config(DEFAULT)
    assert list(config["datasets"]) == ["synth-sthv1", "synth-sthv2", "synth-jester", "synth-minikinetics"]
    assert str(config.source) == str(DEFAULT)
    test = cfg.load_config(TEST)
    assert test["train"]["epochs"] == 1 and test["train"]["lr"] == 0.01  # left-out keys take defaults


def test_schema_defaults_match_default_yaml(methods, tmp_path):
    """A config naming only its datasets gets exactly the default.yaml settings, except the runs
    default.yaml leaves out (those name its synthetic datasets, so the schema's default is none) and the
    synthetic pretraining (a real-data config names its ImageNet weights, or trains from scratch)."""
    full = yaml.safe_load(DEFAULT.read_text())
    minimal = cfg.load_config(write_config(tmp_path, {"datasets": full["datasets"]}))
    for key in set(full) - {"exclude_runs", "model"}:
        assert minimal[key] == full[key], key
    assert minimal["exclude_runs"] == []
    assert minimal["model"] == {**full["model"], "pretrained": None} and full["model"]["pretrained"] == "synthetic"


def test_unknown_key_names_file_line_and_key(methods, tmp_path):
    text = re.sub(r"^(  epochs: \d+\n)", r"\1  epoch: 3\n", DEFAULT.read_text(), count=1, flags=re.M)
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        cfg.load_config(path)
    message = str(err.value)
    assert str(path) in message and "'epoch'" in message and "train" in message and "epochs" in message
    assert err.value.line == text.splitlines().index("  epoch: 3") + 1
    bad = yaml.safe_load(DEFAULT.read_text())
    bad["datasets"]["synth-jester"]["synthtic"] = {}
    with pytest.raises(InputError, match=r"unknown key 'synthtic' in datasets.synth-jester"):
        cfg.load_config(write_config(tmp_path, bad))
    with pytest.raises(InputError, match=r"unknown key 'colour'"):
        cfg.load_config(write_config(tmp_path, {**yaml.safe_load(DEFAULT.read_text()), "colour": 1}))


def test_unknown_names(methods, tmp_path):
    base = yaml.safe_load(DEFAULT.read_text())
    with pytest.raises(InputError, match=r"'resnet34' is not allowed at backbones\[0\].*resnet_tiny"):
        cfg.load_config(write_config(tmp_path, {**base, "backbones": ["resnet34"]}))
    with pytest.raises(InputError, match=r"unknown method 'adafus' in methods.*adafuse"):
        cfg.load_config(write_config(tmp_path, {**base, "methods": ["tsn", "adafus"]}))
    with pytest.raises(InputError, match=r"unknown operating point 'lam9' of method 'adafuse'"):
        cfg.load_config(write_config(tmp_path, {**base, "points": {"adafuse": ["lam9"]}}))
    with pytest.raises(InputError, match=r"'ucf101' is not allowed at datasets.x.format"):
        cfg.load_config(write_config(tmp_path, {**base, "datasets": {"x": {"format": "ucf101", "synthetic": {}}}}))
    with pytest.raises(InputError, match=r"dataset root '/nonexistent/sth' of datasets.sthv1 does not exist"):
        cfg.load_config(write_config(tmp_path, {**base, "exclude_runs": [],
                                                "datasets": {"sthv1": {"format": "sthv1", "root": "/nonexistent/sth"}}}))
    over = copy.deepcopy(base)
    over["datasets"]["synth-sthv1"]["methods"] = {"adafuse": {"lamda": 0.2}}
    with pytest.raises(InputError, match=r"unknown key 'lamda' in datasets.synth-sthv1.methods.adafuse"):
        cfg.load_config(write_config(tmp_path, over))
    config = cfg.load_config(DEFAULT)
    with pytest.raises(InputError, match=r"unknown dataset 'synth-ucf'"):
        cfg.resolve_run(config, "synth-ucf", "tsn", "default", "resnet_tiny", 0)
    with pytest.raises(InputError, match=r"unknown method 'x3d'"):
        cfg.resolve_run(config, "synth-sthv1", "x3d", "default", "resnet_tiny", 0)
    with pytest.raises(InputError, match=r"unknown backbone 'vgg16'"):
        cfg.resolve_run(config, "synth-sthv1", "tsn", "default", "vgg16", 0)
    with pytest.raises(InputError, match=r"unknown operating point 'lam9'"):
        cfg.resolve_run(config, "synth-sthv1", "adafuse", "lam9", "resnet_tiny", 0)


def test_resolve_run_precedence(methods, tmp_path):
    data = yaml.safe_load(DEFAULT.read_text())
    data["model"]["pretrained"] = {"resnet50": "/w/r50.pth"}
    data["datasets"]["synth-sthv1"]["model"] = {"dropout": 0.3}
    data["datasets"]["synth-sthv1"]["train"] = {"epochs": 2}
    data["datasets"]["synth-sthv1"]["methods"] = {"adafuse": {"hidden": 64, "dropout": 0.1}}
    config = cfg.load_config(write_config(tmp_path, data))
    spec = cfg.resolve_run(config, "synth-sthv1", "adafuse", "lam0.05", "resnet_tiny", 3)
    # manifest defaults (tau) < operating point (lam) < config model < dataset model < dataset-method overrides
    assert spec["model"] == {"lam": 0.05, "hidden": 64, "tau": 0.67, "dropout": 0.1, "pretrained": None}
    assert spec["train"]["epochs"] == 2 and spec["train"]["lr"] == 0.01
    assert spec["data"]["prepared"] == "data/prepared/synth-sthv1" and spec["data"]["root"] == "data/raw/synth-sthv1"
    assert spec["run_dir"] == "results/runs/synth-sthv1/adafuse/lam0.05/resnet_tiny/seed3"
    assert spec["seed"] == 3 and spec["requires"] == {}
    json.dumps(spec)
    other = cfg.resolve_run(config, "synth-jester", "adafuse", "default", "resnet50", 0)
    assert other["model"]["dropout"] == 0.5 and other["model"]["hidden"] == 512  # config model beats the manifest
    assert other["model"]["pretrained"] == "/w/r50.pth"
    data["datasets"]["synth-jester"]["methods"] = {"adafuse": {"lam": {"resnet50": 0.2, "default": 0.3}}}
    data["model"]["pretrained"] = {"resnet50": "/w/r50.pth", "default": None}
    config = cfg.load_config(write_config(tmp_path, data))
    picked = cfg.resolve_run(config, "synth-jester", "adafuse", "default", "resnet50", 0)["model"]
    assert picked["lam"] == 0.2 and picked["pretrained"] == "/w/r50.pth"  # per-backbone values picked
    picked = cfg.resolve_run(config, "synth-jester", "adafuse", "default", "resnet18", 0)["model"]
    assert picked["lam"] == 0.3 and picked["pretrained"] is None
    kin = cfg.resolve_run(config, "synth-minikinetics", "tsn", "default", "resnet_tiny", 0)
    assert kin["data"]["flip"] is True and kin["data"]["format"] == "minikinetics"


def test_train_overrides_per_method_and_per_point(methods, tmp_path):
    """The released recipe: TSN-family runs at lr 0.01, those with the temporal shift at 0.02."""
    data = yaml.safe_load(DEFAULT.read_text())
    data["datasets"]["synth-sthv1"]["train"] = {"epochs": 2, "lr": 0.5}
    data["per_method"] = {"tsn": {"train": {"lr": 0.03}},
                          "adafuse": {"train": {"lr": 0.01}, "points": {"lam0.05": {"train": {"lr": 0.02}}}}}
    config = cfg.load_config(write_config(tmp_path, data))
    train = {(method, point): cfg.resolve_run(config, "synth-sthv1", method, point, "resnet_tiny", 0)["train"]
             for method, point in (("tsn", "default"), ("adafuse", "default"), ("adafuse", "lam0.05"), ("lstm", "default"))}
    assert {key: (t["lr"], t["epochs"]) for key, t in train.items()} == {
        ("tsn", "default"): (0.03, 2), ("adafuse", "default"): (0.01, 2), ("adafuse", "lam0.05"): (0.02, 2),
        ("lstm", "default"): (0.5, 2)}
    data["per_method"]["adafuse"]["points"] = {"tsm9": {"train": {"lr": 0.02}}}
    with pytest.raises(InputError, match=r"unknown operating point 'tsm9' of method 'adafuse' in per_method.adafuse.points.*lam0.05"):
        cfg.load_config(write_config(tmp_path, data))
    data["per_method"]["adafuse"]["points"] = {"default": {"model": {"lam": 0.2}}}
    with pytest.raises(InputError, match=r"'model'"):
        cfg.load_config(write_config(tmp_path, data))


def test_seeds_per_method_and_per_point(methods, tmp_path):
    data = yaml.safe_load(DEFAULT.read_text())
    data["seeds"] = [0]
    data["per_method"] = {"tsn": {"seeds": [0, 1, 2]},
                          "adafuse": {"seeds": [5], "points": {"default": {"seeds": [0, 1]}}}}
    config = cfg.load_config(write_config(tmp_path, data))
    seeds = {}
    for dataset, method, point, _, seed in cfg.all_runs(config):
        if dataset == "synth-sthv1" and method in ("tsn", "adafuse", "random", "lstm"):
            seeds.setdefault((method, point), []).append(seed)
    assert seeds == {("tsn", "default"): [0, 1, 2], ("adafuse", "default"): [0, 1], ("adafuse", "lam0.05"): [5],
                     ("adafuse", "skip-only"): [5], ("adafuse", "reuse-only"): [5], ("random", "default"): [0],
                     ("lstm", "default"): [0]}
    data["per_method"]["tsn"]["seeds"] = []
    with pytest.raises(InputError, match="per_method"):
        cfg.load_config(write_config(tmp_path, data))


def test_requires(methods):
    config = cfg.load_config(DEFAULT)
    spec = cfg.resolve_run(config, "synth-jester", "random", "default", "resnet18", 1)
    assert spec["requires"] == {"adafuse": "results/runs/synth-jester/adafuse/default/resnet18/seed1/metrics.json"}
    assert spec["model"]["requires"] == spec["requires"]  # where the method's build(cfg) reads it
    config["methods"] = ["random"]
    assert {r[1] for r in cfg.runs(config)} == {"random"}
    assert {r[1:3] for r in cfg.all_runs(config)} == {("random", "default"), ("adafuse", "default")}
    write_method(methods, "loop_a", {"title": "A", "citation": "-", "requires": ["loop_b"]})
    write_method(methods, "loop_b", {"title": "B", "citation": "-", "requires": ["loop_a"]})
    with pytest.raises(InputError, match="circular `requires`"):
        cfg.load_config(DEFAULT)


def test_runs_include_every_discovered_method(methods):
    config = cfg.load_config(DEFAULT)
    found = {r[1] for r in cfg.runs(config)}
    assert found == set(discover())
    # default.yaml: 3 seeds of tsn, tsm, lstm, adafuse/default on 4 datasets (48); adafuse's lam0.05 on 4,
    # skip-only and reuse-only on synth-sthv1, lam-hi on synth-sthv2 (7); random (3 seeds), cgnet, threshold,
    # earlyexit_frames and earlyexit_msdnet on synth-sthv1 (7); earlyexit on synth-sthv1 and -sthv2 (2)
    assert len(cfg.runs(config)) == 48 + 7 + 7 + 2
    write_method(methods, "pooling", {"title": "Pooling", "citation": "-"})
    (methods / "_template").mkdir()
    (methods / "_template" / "method.yaml").write_text("title: x\ncitation: y\n")
    assert {r[1] for r in cfg.runs(cfg.load_config(DEFAULT))} == set(MANIFESTS) | {"pooling"}
    config["exclude_methods"] = ["adafuse"]
    config["points"] = {}
    assert "adafuse" not in {r[1] for r in cfg.runs(config)}


def _snakemake(*args, env):
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    return subprocess.run([exe, "-n", "--quiet", "rules", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _counts(res) -> dict[str, int]:
    """Job counts from the `Job stats` table of a dry run."""
    return {line.split()[0]: int(line.split()[1]) for line in (res.stdout + res.stderr).splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


def test_snakemake_dry_run_lists_whole_plan(methods, tmp_path):
    env = {**os.environ, "VIDBENCH_METHODS": str(methods)}
    res = _snakemake("--config", f"results={tmp_path}/results", f"data_dir={tmp_path}/data", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    counts = _counts(res)
    assert counts["synth"] == 4 and counts["prepare"] == 4
    assert counts["train"] == 64 and "evaluate" not in counts  # every run once; its train job evaluates it too
    assert counts["aggregate"] == counts["tables"] == counts["plots"] == 1
    # a --configfile replaces default.yaml; a bad key stops before any job
    res = _snakemake("--configfile", str(TEST), "--config", f"results={tmp_path}/r2", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    # test.yaml's 2 datasets only, one seed of every method and point: 9 methods, adafuse with 5 points
    assert _counts(res)["train"] == 2 * 14 and _counts(res)["synth"] == 2
    bad = write_config(tmp_path, {**yaml.safe_load(TEST.read_text()), "seed": [1]}, "bad.yaml")
    res = _snakemake("--configfile", str(bad), env=env)
    assert res.returncode != 0 and "unknown key 'seed'" in res.stdout + res.stderr and "bad.yaml" in res.stdout + res.stderr


@pytest.mark.skipif(not any((ROOT / "methods").glob("*/method.yaml")), reason="no methods in methods/ yet")
def test_default_config_with_project_methods(monkeypatch):
    monkeypatch.delenv("VIDBENCH_METHODS", raising=False)
    config = cfg.load_config(DEFAULT)
    for run in cfg.all_runs(config):
        json.dumps(cfg.resolve_run(config, *run))
    res = _snakemake(env={k: v for k, v in os.environ.items() if k != "VIDBENCH_METHODS"})
    assert res.returncode == 0, res.stderr + res.stdout
