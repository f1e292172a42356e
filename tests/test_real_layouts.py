"""The five official layouts as a user downloads them, with the damage real downloads have, through the
same commands the workflow runs: `vidbench prepare`, `vidbench extract`, `vidbench train --config`.

Each dataset is a small synthetic one in its official layout, then damaged: a byte-order mark and Windows
line ends in the annotation files, an extra `is_cc` column (Kinetics), truncated JPEGs, corrupt / empty /
missing / too-short videos and frame folders, a Kinetics class folder spelled with underscores, the
Mini-Kinetics subset lists kept outside the dataset root. Also: the frame extraction module (sharding,
resuming, the frames index) and the paper's recipe (workflow/config/paper.yaml) planned on these roots.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vidbench import config as cfg
from vidbench.backbones import create_backbone
from vidbench.cli import main as cli
from vidbench.data import extract, layouts, synth
from vidbench.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "workflow" / "config" / "paper.yaml"
FORMATS = ("sthv1", "sthv2", "jester", "kinetics", "minikinetics")


# --------------------------------------------------------------------------------------------------
# Building and damaging the datasets
# --------------------------------------------------------------------------------------------------
def windows_bom(path: Path) -> None:
    """Rewrite a text file as a Windows editor saves it: UTF-8 with a byte-order mark, CRLF line ends."""
    text = path.read_text(encoding="utf-8")
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def semicolon_ids(path: Path) -> list[str]:
    return [line.split(";")[0] for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def damage_frames(root: Path, video_dir: str, splits: dict, labels: str) -> dict:
    """Damage a frame-folder dataset (Something-V1 or Jester); returns {what: id}."""
    ids = semicolon_ids(root / splits["train"])
    folders = root / video_dir
    bad = dict(zip(("truncated_first", "truncated_middle", "missing", "too_short", "empty"), ids))
    truncate(folders / bad["truncated_first"] / "00001.jpg")  # prepare decodes the first and last frames
    frames = sorted((folders / bad["truncated_middle"]).glob("*.jpg"))
    for jpg in frames[1:-1]:  # only training reads these: the sample is skipped there
        truncate(jpg)
    shutil.rmtree(folders / bad["missing"])
    for jpg in sorted((folders / bad["too_short"]).glob("*.jpg"))[2:]:
        jpg.unlink()
    for jpg in (folders / bad["empty"]).glob("*.jpg"):
        jpg.unlink()
    for name in (labels, *splits.values()):
        windows_bom(root / name)
    return bad


def damage_sthv2(root: Path) -> dict:
    ids = [e["id"] for e in json.loads((root / layouts.STHV2_SPLITS["train"]).read_text())]
    videos = root / layouts.STHV2_VIDEO_DIR
    bad = dict(zip(("corrupt", "empty", "missing", "too_short"), ids))
    (videos / f"{bad['corrupt']}.webm").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    (videos / f"{bad['empty']}.webm").write_bytes(b"")
    (videos / f"{bad['missing']}.webm").unlink()
    synth.write_video(videos / f"{bad['too_short']}.webm", np.zeros((2, 32, 40, 3), np.uint8), "libvpx")
    for name in (layouts.STHV2_LABELS, *layouts.STHV2_SPLITS.values()):
        windows_bom(root / name)
    return bad


def damage_kinetics(root: Path, mini: bool, subset_dir: Path | None = None) -> dict:
    """Kinetics CSVs with an is_cc column, a BOM and CRLF; an empty .mp4; one class folder with '_'."""
    bad = {}
    for split, name in layouts.KINETICS_SPLITS.items():
        lines = (root / name).read_text().splitlines()
        rows = [lines[0] + ",is_cc"] + [line + ",0" for line in lines[1:]]
        (root / name).write_text("\n".join(rows) + "\n")
        windows_bom(root / name)
    ids = set((root / layouts.MINI_IDS["train"]).read_text().split())
    mp4s = sorted(p for p in (root / "train").rglob("*.mp4") if p.stem[:11] in ids)
    mp4s[0].write_bytes(b"")
    bad["empty"] = mp4s[0].stem[:11]
    subset_classes = (root / layouts.MINI_CLASSES).read_text().splitlines()
    spaced = next(p for p in sorted((root / "train").iterdir()) if " " in p.name and p.name in subset_classes)
    bad["underscored_class"] = spaced.rename(spaced.with_name(spaced.name.replace(" ", "_"))).name
    if mini:  # the subset lists live outside the (read-only) Kinetics root, ids written as file paths
        subset_dir.mkdir()
        shutil.move(root / layouts.MINI_CLASSES, subset_dir / "classes.txt")
        for split in ("train", "val"):
            ids = (root / layouts.MINI_IDS[split]).read_text().split()
            paths = {p.stem[:11]: p.relative_to(root) for p in (root / split).rglob("*.mp4")}
            (subset_dir / f"{split}.txt").write_text("".join(f"{paths[i]}\n" for i in ids))
            (root / layouts.MINI_IDS[split]).unlink()
            windows_bom(subset_dir / f"{split}.txt")
    else:
        for name in (layouts.MINI_CLASSES, *layouts.MINI_IDS.values()):
            (root / name).unlink()
    return bad


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Damaged datasets of every layout, prepared through the CLI, and a config that trains on them."""
    base = tmp_path_factory.mktemp("real")
    roots, bad = {}, {}
    for fmt in ("sthv1", "sthv2", "jester", "minikinetics"):
        synth.generate(fmt, base / "synth" / fmt, train_per_class=2, val_per_class=1, seed=0)
    for fmt in FORMATS:
        roots[fmt] = base / "raw" / fmt
        shutil.copytree(base / "synth" / ("minikinetics" if fmt == "kinetics" else fmt), roots[fmt])
    bad["sthv1"] = damage_frames(roots["sthv1"], layouts.STHV1_VIDEO_DIR, layouts.STHV1_SPLITS, layouts.STHV1_LABELS)
    bad["jester"] = damage_frames(roots["jester"], layouts.JESTER_VIDEO_DIR, layouts.JESTER_SPLITS,
                                  layouts.JESTER_LABELS)
    bad["sthv2"] = damage_sthv2(roots["sthv2"])
    bad["kinetics"] = damage_kinetics(roots["kinetics"], mini=False)
    subset = base / "mini-lists"
    bad["minikinetics"] = damage_kinetics(roots["minikinetics"], mini=True, subset_dir=subset)

    config = yaml.safe_load((ROOT / "workflow" / "config" / "test.yaml").read_text())
    config.update(results=str(base / "results"), data_dir=str(base / "data"), methods=["tsn"])
    config["datasets"] = {fmt: {"format": fmt, "root": str(roots[fmt])} for fmt in FORMATS}
    config["datasets"]["sthv2"]["extract"] = {"shards": 2, "short_side": 24}
    config["datasets"]["minikinetics"]["subset"] = {"classes": str(subset / "classes.txt"),
                                                    "train": str(subset / "train.txt"), "val": str(subset / "val.txt")}
    config["data"].update(cache=False)
    config["train"].update(max_unreadable=0.5)
    config_path = base / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    loaded = cfg.load_config(config_path)

    reports = {}
    for fmt in FORMATS:  # exactly the commands of the workflow's prepare / extract_shard / index_frames rules
        out = base / "data" / "prepared" / fmt
        subset_args = []
        if fmt == "minikinetics":
            subset_args = ["--subset-classes", str(subset / "classes.txt"), "--subset-ids-train",
                           str(subset / "train.txt"), "--subset-ids-val", str(subset / "val.txt")]
        assert cli(["prepare", "--format", fmt, "--root", str(roots[fmt]), "--out", str(out), *subset_args]) == 0
        reports[fmt] = json.loads((out / "report.json").read_text())
    frames = cfg.frames_dir(loaded, "sthv2")
    for shard in (0, 1):
        assert cli(["extract", "--prepared", f"{base}/data/prepared/sthv2", "--out", frames, "--shard", str(shard),
                    "--shards", "2", "--short-side", "24"]) == 0
    assert cli(["extract", "--prepared", f"{base}/data/prepared/sthv2", "--out", frames,
                "--index", cfg.prepared_dir(loaded, "sthv2"), "--shards", "2"]) == 0
    return {"base": base, "roots": roots, "bad": bad, "reports": reports, "config": config_path,
            "loaded": loaded, "subset": subset}


def read_rows(prepared: Path, split: str) -> list[dict]:
    with open(prepared / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def listed(report: dict, key: str) -> set[str]:
    return {item["id"] for item in report[key]}


# --------------------------------------------------------------------------------------------------
# prepare: indices, class maps, counts and the report
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["sthv1", "jester"])
def test_frame_layouts_with_damage(world, fmt):
    report, bad, root = world["reports"][fmt], world["bad"][fmt], world["roots"][fmt]
    prepared = world["base"] / "data" / "prepared" / fmt
    labels = layouts.STHV1_LABELS if fmt == "sthv1" else layouts.JESTER_LABELS
    splits = layouts.STHV1_SPLITS if fmt == "sthv1" else layouts.JESTER_SPLITS
    classes = (root / labels).read_text(encoding="utf-8-sig").splitlines()  # BOM + CRLF accepted
    assert (prepared / "classes.txt").read_text().splitlines() == classes
    assert listed(report, "missing") == {bad["missing"]}
    assert listed(report, "unreadable") == {bad["truncated_first"], bad["empty"]}
    assert [(t["id"], t["num_frames"]) for t in report["too_short"]] == [(bad["too_short"], 2)]
    annotated = semicolon_ids(root / splits["train"])
    rows = read_rows(prepared, "train")
    assert {r["id"] for r in rows} == set(annotated) - {bad[k] for k in ("missing", "truncated_first", "empty",
                                                                         "too_short")}
    assert report["counts"] == {"train": len(annotated) - 4, "val": len(classes)}
    assert report["annotated"]["train"] == len(annotated) and report["dropped"]["train"] == {
        "missing": 1, "unreadable": 2, "too_short": 1}
    assert sum(report["per_class"]["train"].values()) == len(rows)
    assert all(report["per_class"]["val"][c] == 1 for c in classes)
    names = dict(line.split(";") for line in (root / splits["train"]).read_text(encoding="utf-8-sig").splitlines())
    assert all(classes[int(r["label"])] == names[r["id"]] for r in rows)


def test_sthv2_with_damage_and_its_frames_index(world):
    report, bad, root = world["reports"]["sthv2"], world["bad"]["sthv2"], world["roots"]["sthv2"]
    assert listed(report, "unreadable") == {bad["corrupt"], bad["empty"]}
    assert listed(report, "missing") == {bad["missing"]} and listed(report, "too_short") == {bad["too_short"]}
    assert report["counts"] == {"train": 24 - 4, "val": 12} and report["num_classes"] == 12
    entries = {e["id"]: e for e in json.loads((root / layouts.STHV2_SPLITS["train"]).read_text(encoding="utf-8-sig"))}
    prepared = world["base"] / "data" / "prepared" / "sthv2"
    classes = (prepared / "classes.txt").read_text().splitlines()
    for row in read_rows(prepared, "train"):
        assert classes[int(row["label"])] == layouts.sthv2_class(entries[row["id"]]["template"])
    # the frames index: same videos and labels, rows pointing at <frames>/<id>, kind frames
    frames_index = Path(cfg.prepared_dir(world["loaded"], "sthv2"))
    assert frames_index == prepared / "frames"
    meta = json.loads((frames_index / "meta.json").read_text())
    assert meta["kind"] == "frames" and meta["root"] == cfg.frames_dir(world["loaded"], "sthv2")
    frames_report = json.loads((frames_index / "report.json").read_text())
    assert frames_report["counts"] == report["counts"] and listed(frames_report, "unreadable") == {bad["corrupt"],
                                                                                                  bad["empty"]}
    for split in ("train", "val"):
        videos = {r["id"]: r for r in read_rows(prepared, split)}
        for row in read_rows(frames_index, split):
            assert row["path"] == row["id"] and row["label"] == videos[row["id"]]["label"]
            assert row["num_frames"] == videos[row["id"]]["num_frames"]  # every frame extracted
            with Image.open(Path(meta["root"]) / row["path"] / "00001.jpg") as img:
                assert min(img.size) <= 24  # short side resized to 24 (never up)


@pytest.mark.parametrize("fmt", ["kinetics", "minikinetics"])
def test_kinetics_layouts_with_damage(world, fmt):
    report, bad, root = world["reports"][fmt], world["bad"][fmt], world["roots"][fmt]
    prepared = world["base"] / "data" / "prepared" / fmt
    classes = (prepared / "classes.txt").read_text().splitlines()
    assert listed(report, "unreadable") == {bad["empty"]} and not report["missing"]
    rows = read_rows(prepared, "train")
    labels = {}
    for split in ("train", "val"):
        text = (root / layouts.KINETICS_SPLITS[split]).read_text(encoding="utf-8-sig")
        labels.update({r["youtube_id"]: r["label"] for r in csv.DictReader(text.splitlines())})
    assert all(classes[int(r["label"])] == labels[r["id"]] for r in rows)
    underscored = [r for r in rows if r["path"].split("/")[1] == bad["underscored_class"]]
    assert underscored and all((root / r["path"]).is_file() for r in rows)  # 'arm wrestling' -> arm_wrestling/
    if fmt == "kinetics":
        assert classes == sorted(set(labels.values())) and len(classes) == 13
        assert report["counts"] == {"train": 13 * 2 + 10 - 1, "val": 13 + 10}  # subset classes have an extra video
    else:
        assert classes == (world["subset"] / "classes.txt").read_text().splitlines() and len(classes) == 10
        assert report["counts"] == {"train": 10 * 2 - 1, "val": 10}
        assert report["excluded_by_subset"] == {"train": 36 - 20, "val": 23 - 10}
        assert all(v == 1 for v in report["per_class"]["val"].values())


def test_unknown_class_stops_prepare_and_the_report_names_it(world, tmp_path):
    root = tmp_path / "sthv1"
    shutil.copytree(world["roots"]["sthv1"], root)
    with open(root / layouts.STHV1_SPLITS["val"], "ab") as handle:
        handle.write("999;Dancing the tango\r\n".encode())
    lines = (root / layouts.STHV1_SPLITS["val"]).read_text(encoding="utf-8-sig").splitlines()
    assert cli(["prepare", "--format", "sthv1", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["ok"] and not (tmp_path / "out" / "train.csv").exists()
    [problem] = report["annotation_problems"]
    assert problem["file"].endswith(layouts.STHV1_SPLITS["val"]) and problem["line"] == len(lines)
    assert "unknown class 'Dancing the tango'" in problem["message"]


# --------------------------------------------------------------------------------------------------
# Training through the workflow's command, on every layout
# --------------------------------------------------------------------------------------------------
def train(world, fmt, out: Path, *extra) -> int:
    return cli(["train", "--config", str(world["config"]), "--dataset", fmt, "--method", "tsn",
                "--backbone", "resnet_tiny", "--out", str(out), "--no-progress", *extra])


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_short_training_per_layout(world, fmt):
    out = world["base"] / "runs" / fmt
    assert train(world, fmt, out, *(["--evaluate"] if fmt == "sthv1" else [])) == 0
    trained = torch.load(out / "model.pt", weights_only=True)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["data"]["root"] == str(world["roots"][fmt]) and spec["train"]["epochs"] == 1
    prepared = Path(spec["data"]["prepared"])
    assert trained["model"]["fc.weight"].shape[0] == len((prepared / "classes.txt").read_text().splitlines())
    [row] = list(csv.DictReader((out / "log.csv").open()))
    # the Something-V1 / Jester video whose middle frames are truncated passes prepare and is skipped here
    assert int(row["skipped"]) == (1 if fmt in ("sthv1", "jester") else 0) == trained["skipped"]
    if fmt == "sthv1":
        [path] = trained["unreadable"]
        assert path.endswith(world["bad"]["sthv1"]["truncated_middle"])
        by_training = json.loads((out / "metrics.json").read_text())     # `train --evaluate`, the workflow's way
        assert cli(["evaluate", "--run", str(out), "--no-progress"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["unreadable"]["train"] == 1 and metrics["unreadable"]["count"] == 1
        assert metrics["num_videos"] == 12
        assert by_training.pop("environment") and by_training == {k: v for k, v in metrics.items() if k != "environment"}


def test_too_many_unreadable_videos_stop_with_their_list_and_keep_the_checkpoint(world, tmp_path):
    from vidbench.train import TrainingError, train as run_training

    out = tmp_path / "run"
    spec = cfg.resolve_run(world["loaded"], "sthv1", "tsn", "default", "resnet_tiny", 0)
    spec["train"].update(max_unreadable=0.01, epochs=2)  # the default limit: 1 of 20 is 5%
    with pytest.raises(TrainingError) as info:
        run_training(spec, out, progress=False)
    message = str(info.value)
    assert "1 of 20 training videos were unreadable" in message
    assert world["bad"]["sthv1"]["truncated_middle"] in message  # the list of files
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["state"]["epoch"] == 1 and not (out / "model.pt").exists()  # what was trained is kept


# --------------------------------------------------------------------------------------------------
# Frame extraction: sharding, resuming, failures
# --------------------------------------------------------------------------------------------------
def test_extraction_shards_cover_every_video_once_and_resume(world, tmp_path, monkeypatch):
    prepared = world["base"] / "data" / "prepared" / "sthv2"
    jobs = extract.video_jobs(prepared)
    assert len(jobs) == 20 + 12 and len({name for name, _ in jobs}) == len(jobs)
    for shards in (1, 3, 7, 40):
        parts = [extract.shard_jobs(jobs, i, shards) for i in range(shards)]
        assert sorted(j for part in parts for j in part) == jobs  # every video in exactly one shard
    with pytest.raises(InputError):
        extract.shard_jobs(jobs, 3, 3)

    out = tmp_path / "frames"
    real = extract.extract_video
    calls = []

    def crash_after_two(src, dest, short_side=0, quality=90):
        if len(calls) == 2:
            raise KeyboardInterrupt("preempted")
        calls.append(dest.name)
        return real(src, dest, short_side, quality)

    monkeypatch.setattr(extract, "extract_video", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_shard(prepared, out, 1, 3, short_side=0, quiet=True)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(calls)
    assert not list(out.glob(".tmp-*")) and not extract.marker_path(out, 1, 3).exists()
    monkeypatch.setattr(extract, "extract_video", real)
    mine = extract.shard_jobs(jobs, 1, 3)
    summary = extract.extract_shard(prepared, out, 1, 3, short_side=0, quiet=True)
    assert summary["already_done"] == 2 and summary["extracted"] == len(mine) - 2 and not summary["failed"]
    assert json.loads(extract.marker_path(out, 1, 3).read_text())["videos"] == len(mine)
    again = extract.extract_shard(prepared, out, 1, 3, short_side=0, quiet=True)
    assert again["extracted"] == 0 and again["already_done"] == len(mine)
    for name, rel in mine:
        n = len(list((out / name).glob("*.jpg")))
        assert sorted(p.name for p in (out / name).iterdir()) == [f"{k:05d}.jpg" for k in range(1, n + 1)]
    with pytest.raises(InputError, match="short_side"):  # one folder, one frame size
        extract.extract_shard(prepared, out, 0, 3, short_side=16, quiet=True)
    with pytest.raises(InputError, match="have not finished"):
        extract.index_frames(prepared, out, tmp_path / "index", shards=3, quiet=True)


def test_extraction_records_a_video_that_fails_and_the_index_drops_it(world, tmp_path):
    prepared = world["base"] / "data" / "prepared" / "sthv2"
    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy, ignore=shutil.ignore_patterns("frames"))
    root = tmp_path / "root"
    shutil.copytree(world["roots"]["sthv2"], root)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "root": str(root)}))
    victim = read_rows(copy, "val")[0]
    (root / victim["path"]).write_bytes(b"\x1a\x45\xdf\xa3 broken")  # damaged after prepare
    summary = extract.extract_shard(copy, tmp_path / "frames", 0, 1, quiet=True)
    assert [f["id"] for f in summary["failed"]] == [victim["id"]]
    report = extract.index_frames(copy, tmp_path / "frames", tmp_path / "index", shards=1, quiet=True)
    assert victim["id"] in listed(report, "unreadable") and report["counts"]["val"] == 11
    assert victim["id"] not in {r["id"] for r in read_rows(tmp_path / "index", "val")}


def test_target_size_never_upscales():
    assert extract.target_size(427, 240, 320) == (427, 240)
    assert extract.target_size(640, 480, 320) == (426, 320)
    assert extract.target_size(480, 640, 256) == (256, 342)
    assert extract.target_size(640, 480, 0) == (640, 480)


# --------------------------------------------------------------------------------------------------
# The paper's recipe
# --------------------------------------------------------------------------------------------------
def fake_imagenet_weights(path: Path, backbone: str) -> Path:
    """A torchvision-format state dict of the right names and shapes that takes a few kilobytes."""
    with torch.device("meta"):
        shapes = create_backbone(backbone).state_dict()
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}
    width = shapes["layer4.0.conv1.weight"].shape[1] * (4 if backbone == "resnet50" else 1)
    state.update({"fc.weight": torch.zeros(()).expand(1000, width), "fc.bias": torch.zeros(()).expand(1000)})
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def paper_paths(world):
    base = world["base"]
    synth_root = base / "synth"
    paths = {
        "results": str(base / "paper-results"), "data_dir": str(base / "paper-data"),
        "datasets": {name: {"root": str(synth_root / name)} for name in ("sthv1", "sthv2", "jester", "minikinetics")},
        "model": {"pretrained": {b: str(fake_imagenet_weights(base / f"{b}.pth", b)) for b in ("resnet18", "resnet50")}},
    }
    path = base / "my-paths.yaml"
    path.write_text(yaml.safe_dump(paths))
    return path


def test_paper_config_plans_the_full_reproduction(paper_paths):
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    env = {k: v for k, v in os.environ.items() if k != "VIDBENCH_METHODS"}
    res = subprocess.run([exe, "-n", "--quiet", "rules", "--configfile", str(PAPER), str(paper_paths)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # Table 3: tsn, lstm, adafuse x 4 datasets x 2 backbones; Table 1: cgnet, threshold, random (V1, R18);
    # Table 6: Ada.Skip, Ada.Reuse (V1, R18); Table 5: tsm, AdaFuse^TSM, ^TSM+Last (V1, V2, R50)
    assert counts["train"] == 3 * 8 + 3 + 2 + 2 + 4 and "evaluate" not in counts  # a train job evaluates too
    assert counts["prepare"] == 4 and counts["index_frames"] == 2 and counts["extract_shard"] == 16 + 64
    assert counts["tables"] == counts["plots"] == 1


@pytest.mark.parametrize("extra", [[], [PAPER.with_name("paper-16f.yaml")]], ids=["paper", "paper-16f"])
def test_paper_config_is_lint_clean(paper_paths, extra):
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    env = {k: v for k, v in os.environ.items() if k != "VIDBENCH_METHODS"}
    res = subprocess.run([exe, "--lint", "--configfile", str(PAPER), str(paper_paths), *map(str, extra)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Lints for" not in res.stdout + res.stderr, res.stdout[-3000:] + res.stderr[-3000:]


def test_paper_config_holds_the_recipe(paper_paths, tmp_path):
    data = yaml.safe_load(PAPER.read_text())
    for key, value in yaml.safe_load(paper_paths.read_text()).items():
        if isinstance(value, dict) and key == "datasets":
            for name, entry in value.items():
                data["datasets"][name].update(entry)
        else:
            data[key] = value
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data))
    config = cfg.load_config(path)
    spec = lambda *run: cfg.resolve_run(config, *run, 0)  # noqa: E731
    ada = spec("sthv1", "adafuse", "default", "resnet50")
    lr = {(method, point): spec("sthv1", method, point, "resnet50")["train"]["lr"]
          for method, point in (("tsn", "default"), ("lstm", "default"), ("adafuse", "default"), ("tsm", "default"),
                                ("adafuse", "tsm"), ("adafuse", "tsm-last"))}
    # the released scripts: AdaTSN50 at 0.01, AdaTSM50 and AdaTSM50Last (with the shift) at 0.02; TSM: its
    # authors' Something recipe, 0.01
    assert lr == {("tsn", "default"): 0.01, ("lstm", "default"): 0.01, ("adafuse", "default"): 0.01,
                  ("tsm", "default"): 0.01, ("adafuse", "tsm"): 0.02, ("adafuse", "tsm-last"): 0.02}
    assert spec("sthv1", "adafuse", "skip-only", "resnet18")["train"]["lr"] == 0.01
    for key, value in {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "lr_steps": [20, 40], "epochs": 50,
                       "batch_size": 64, "clip_grad": 20, "bias_lr_mult": 2.0}.items():
        assert ada["train"][key] == value
    assert ada["data"]["num_segments"] == 8 and ada["data"]["input_size"] == 224 and ada["data"]["scale_size"] == 256
    assert ada["model"]["lam"] == 0.125 and spec("sthv2", "adafuse", "tsm-last", "resnet50")["model"]["lam"] == 0.075
    assert ada["model"]["loss_flops"] == "upper_bound"  # the released V1 script charges conv2's savings only
    assert spec("sthv2", "adafuse", "tsm-last", "resnet50")["model"]["loss_flops"] == "eq5"
    assert ada["model"]["dropout"] == 0.5 and ada["model"]["pretrained"].endswith("resnet50.pth")
    assert not ada["data"]["flip"] and spec("minikinetics", "tsn", "default", "resnet18")["data"]["flip"]
    assert spec("sthv2", "tsn", "default", "resnet18")["data"]["prepared"].endswith("prepared/sthv2/frames")
    runs = cfg.runs(config)
    assert ("jester", "tsm", "default", "resnet50", 0) not in runs and ("sthv1", "cgnet", "default", "resnet18", 0) in runs
    # a missing or mismatched weights file stops validation, naming the file
    data["model"]["pretrained"]["resnet50"] = data["model"]["pretrained"]["resnet18"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"resnet18\.pth: weights do not match resnet50"):
        cfg.load_config(path)
    data["model"]["pretrained"]["resnet50"] = str(tmp_path / "resnet50-0676ba61.pth")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"resnet50-0676ba61\.pth: pretrained weights file not found"):
        cfg.load_config(path)


def test_kinetics_as_the_cvdf_mirror_unpacks_it(world, tmp_path):
    """annotations/<split>.csv and one flat folder of videos per split; id lists as '<path> <frames> <label>'."""
    root = tmp_path / "k400"
    shutil.copytree(world["roots"]["minikinetics"], root)
    (root / "annotations").mkdir()
    for split in ("train", "val"):
        (root / layouts.KINETICS_SPLITS[split]).rename(root / "annotations" / f"{split}.csv")
        for video in list((root / split).rglob("*.mp4")):
            video.rename(root / split / video.name)
    subset = world["subset"]
    lists = {}
    for split in ("train", "val"):
        lists[split] = tmp_path / f"{split}_videofolder.txt"
        lines = (subset / f"{split}.txt").read_text(encoding="utf-8-sig").split()
        lists[split].write_text("".join(f"{line.removesuffix('.mp4')} 250 {k % 7}\n" for k, line in enumerate(lines)))
    assert cli(["prepare", "--format", "minikinetics", "--root", str(root), "--out", str(tmp_path / "out"),
                "--subset-classes", str(subset / "classes.txt"), "--subset-ids-train", str(lists["train"]),
                "--subset-ids-val", str(lists["val"])]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["counts"] == world["reports"]["minikinetics"]["counts"] and not report["missing"]
    assert all(row["path"].count("/") == 1 for row in read_rows(tmp_path / "out", "train"))
