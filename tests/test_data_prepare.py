"""`vidbench prepare`: the uniform index, the Mini-Kinetics filter, bad annotations and damaged videos."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from fixtures_data import TRAIN_PER_CLASS, VAL_PER_CLASS, read_semicolon, tiny_copy, tiny_root

from vidbench.cli import main as cli_main
from vidbench.data import layouts, synth
from vidbench.data.prepare import prepare
from vidbench.errors import InputError


def _index(out, split):
    with open(out / f"{split}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _classes(out):
    return (out / "classes.txt").read_text().splitlines()


@pytest.mark.parametrize("fmt", ["sthv1", "jester"])
def test_prepare_frame_datasets(fmt, tmp_path_factory, tmp_path):
    root = tiny_root(fmt, tmp_path_factory)
    report = prepare(fmt, root, tmp_path, quiet=True)
    labels, splits = ((layouts.STHV1_LABELS, layouts.STHV1_SPLITS) if fmt == "sthv1"
                      else (layouts.JESTER_LABELS, layouts.JESTER_SPLITS))
    classes = _classes(tmp_path)
    assert classes == (root / labels).read_text().splitlines()
    assert json.loads((tmp_path / "meta.json").read_text())["kind"] == "frames"
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        official = read_semicolon(root / splits[split])
        rows = _index(tmp_path, split)
        assert list(rows[0]) == ["id", "path", "num_frames", "label"]
        assert len(rows) == len(official) == per_class * len(classes) == report["counts"][split]
        for r in rows:
            assert classes[int(r["label"])] == official[r["id"]]
            folder = root / r["path"]
            assert folder.is_dir() and int(r["num_frames"]) == len(list(folder.glob("*.jpg")))
        assert all(v == per_class for v in report["per_class"][split].values())
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ok"] and not saved["missing"] and not saved["unreadable"] and not saved["too_short"]


def test_prepare_sthv2(tmp_path_factory, tmp_path):
    root = tiny_root("sthv2", tmp_path_factory)
    report = prepare("sthv2", root, tmp_path, quiet=True)
    labels = json.loads((root / layouts.STHV2_LABELS).read_text())
    classes = _classes(tmp_path)
    assert [labels[c] for c in classes] == [str(i) for i in range(len(classes))]
    entries = {e["id"]: e for e in json.loads((root / layouts.STHV2_SPLITS["train"]).read_text())}
    rows = _index(tmp_path, "train")
    assert len(rows) == report["counts"]["train"] == 12 * TRAIN_PER_CLASS
    for r in rows:
        assert classes[int(r["label"])] == layouts.sthv2_class(entries[r["id"]]["template"])
        assert r["path"].endswith(".webm") and synth.MIN_LEN <= int(r["num_frames"]) <= synth.MAX_LEN
    assert json.loads((tmp_path / "meta.json").read_text()) == {
        "format": "sthv2", "root": str(root), "kind": "video", "num_classes": 12}


def test_prepare_minikinetics_filters_the_subset(tmp_path_factory, tmp_path):
    root = tiny_root("minikinetics", tmp_path_factory)
    report = prepare("minikinetics", root, tmp_path / "mini", quiet=True)
    subset = (root / layouts.MINI_CLASSES).read_text().splitlines()
    assert _classes(tmp_path / "mini") == subset
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        ids = set((root / layouts.MINI_IDS[split]).read_text().split())
        rows = _index(tmp_path / "mini", split)
        assert len(rows) == per_class * len(subset) == report["counts"][split]
        assert {r["id"] for r in rows} == ids
        for r in rows:
            assert r["path"].split("/")[1] == subset[int(r["label"])]
        assert report["excluded_by_subset"][split] > 0

    full = prepare("kinetics", root, tmp_path / "full", quiet=True)
    classes = _classes(tmp_path / "full")
    assert classes == sorted(look.name for look in synth.KINETICS_LOOKS)
    assert full["counts"]["train"] > report["counts"]["train"]
    for r in _index(tmp_path / "full", "train"):
        assert r["path"].split("/")[1] == classes[int(r["label"])]


def test_prepare_minikinetics_explicit_subset_paths(tmp_path_factory, tmp_path):
    root = tiny_root("minikinetics", tmp_path_factory)
    classes = tmp_path / "two_classes.txt"
    classes.write_text("archery\nabseiling\n")
    ids = {s: (root / layouts.MINI_IDS[s]) for s in ("train", "val")}
    rep = prepare("minikinetics", root, tmp_path / "out", subset_classes=classes, subset_ids_train=ids["train"],
                  subset_ids_val=ids["val"], quiet=True)
    assert _classes(tmp_path / "out") == ["archery", "abseiling"]
    assert rep["counts"]["train"] == 2 * TRAIN_PER_CLASS
    assert len(rep["warnings"]) > 0  # listed ids of other classes are reported, not fatal


# --------------------------------------------------------------------------------------------------
# Bad annotations: InputError naming file and line, after report.json listed every problem
# --------------------------------------------------------------------------------------------------
def test_malformed_csv_line_names_file_and_line(tmp_path_factory, tmp_path):
    root = tiny_copy("sthv1", tmp_path_factory, tmp_path / "root")
    train = root / layouts.STHV1_SPLITS["train"]
    lines = train.read_text().splitlines()
    lines[2] = lines[2].replace(";", ",")  # line 3: wrong separator -> 1 field
    lines[4] = lines[4] + ";extra"  # line 5: 3 fields
    train.write_text("\n".join(lines) + "\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train.csv").write_text("stale")
    with pytest.raises(InputError) as info:
        prepare("sthv1", root, tmp_path / "out", quiet=True)
    err = info.value
    assert err.path == str(train) and err.line == 3 and "<id>;<class name>" in str(err)
    assert f"{train}:3" in str(err)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["ok"]
    assert [(p["file"], p["line"]) for p in report["annotation_problems"]] == [(str(train), 3), (str(train), 5)]
    assert not (tmp_path / "out" / "train.csv").exists(), "stale index left next to a failed report"


def test_unknown_class_is_an_error(tmp_path_factory, tmp_path):
    root = tiny_copy("jester", tmp_path_factory, tmp_path / "root")
    val = root / layouts.JESTER_SPLITS["val"]
    lines = val.read_text().splitlines()
    vid = lines[1].split(";")[0]
    lines[1] = f"{vid};Doing Jazz Hands"
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        prepare("jester", root, tmp_path / "out", quiet=True)
    assert info.value.line == 2 and "Doing Jazz Hands" in str(info.value) and info.value.path == str(val)


def test_unknown_template_and_bad_json_sthv2(tmp_path_factory, tmp_path):
    root = tiny_copy("sthv2", tmp_path_factory, tmp_path / "root")
    train = root / layouts.STHV2_SPLITS["train"]
    entries = json.loads(train.read_text())
    entries[3]["template"] = "Juggling [something]"
    train.write_text(json.dumps(entries))
    val = root / layouts.STHV2_SPLITS["val"]
    val.write_text('[\n{"id": "1", "template": "x"},\n{"id": 2\n]\n')
    with pytest.raises(InputError) as info:
        prepare("sthv2", root, tmp_path / "out", quiet=True)
    assert "entry 3" in str(info.value) and entries[3]["id"] in str(info.value)
    problems = json.loads((tmp_path / "out" / "report.json").read_text())["annotation_problems"]
    assert len(problems) == 2
    assert problems[1]["file"] == str(val) and problems[1]["line"] == 4 and "bad JSON" in problems[1]["message"]


def test_missing_root_and_missing_annotation_file(tmp_path_factory, tmp_path):
    with pytest.raises(InputError) as info:
        prepare("sthv1", tmp_path / "nowhere", tmp_path / "out", quiet=True)
    assert str(tmp_path / "nowhere") in str(info.value)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["annotation_problems"]
    root = tiny_copy("jester", tmp_path_factory, tmp_path / "root")
    (root / layouts.JESTER_LABELS).unlink()
    (root / layouts.JESTER_SPLITS["val"]).unlink()
    with pytest.raises(InputError) as info:
        prepare("jester", root, tmp_path / "out2", quiet=True)
    assert layouts.JESTER_LABELS in str(info.value)
    problems = json.loads((tmp_path / "out2" / "report.json").read_text())["annotation_problems"]
    assert {p["file"] for p in problems} == {str(root / layouts.JESTER_LABELS), str(root / layouts.JESTER_SPLITS["val"])}
    # the command line turns it into exit status 2
    assert cli_main(["prepare", "--format", "jester", "--root", str(root), "--out", str(tmp_path / "o3")]) == 2


def test_bom_and_crlf_are_accepted(tmp_path_factory, tmp_path):
    src = tiny_root("sthv1", tmp_path_factory)
    root = tiny_copy("sthv1", tmp_path_factory, tmp_path / "root")
    for name in (layouts.STHV1_LABELS, *layouts.STHV1_SPLITS.values()):
        text = (root / name).read_text()
        (root / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    prepare("sthv1", root, tmp_path / "a", quiet=True)
    prepare("sthv1", src, tmp_path / "b", quiet=True)
    for name in ("classes.txt", "train.csv", "val.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    kin = tiny_copy("minikinetics", tmp_path_factory, tmp_path / "kin")
    path = kin / layouts.KINETICS_SPLITS["train"]
    path.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n").encode())
    assert prepare("minikinetics", kin, tmp_path / "k", quiet=True)["counts"]["train"] == 10 * TRAIN_PER_CLASS


def test_kinetics_bad_row(tmp_path_factory, tmp_path):
    root = tiny_copy("minikinetics", tmp_path_factory, tmp_path / "root")
    path = root / layouts.KINETICS_SPLITS["val"]
    lines = path.read_text().splitlines()
    lines[2] = "abseiling,onlytwo"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        prepare("kinetics", root, tmp_path / "out", quiet=True)
    assert info.value.path == str(path) and info.value.line == 3


# --------------------------------------------------------------------------------------------------
# Damaged videos: listed in report.json, left out of the index, not fatal
# --------------------------------------------------------------------------------------------------
def test_damaged_frame_folders(tmp_path_factory, tmp_path):
    root = tiny_copy("sthv1", tmp_path_factory, tmp_path / "root")
    ids = list(read_semicolon(root / layouts.STHV1_SPLITS["train"]))
    video_dir = root / layouts.STHV1_VIDEO_DIR
    truncated, missing, short, empty = ids[:4]
    jpg = video_dir / truncated / "00001.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    for p in (video_dir / missing).iterdir():
        p.unlink()
    (video_dir / missing).rmdir()
    for p in sorted((video_dir / short).iterdir())[2:]:
        p.unlink()
    for p in (video_dir / empty).iterdir():
        p.unlink()
    report = prepare("sthv1", root, tmp_path / "out", quiet=True)
    assert [m["id"] for m in report["missing"]] == [missing]
    assert {u["id"] for u in report["unreadable"]} == {truncated, empty}
    assert [(t["id"], t["num_frames"]) for t in report["too_short"]] == [(short, 2)]
    assert report["counts"]["train"] == len(ids) - 4 and report["dropped"]["train"]["unreadable"] == 2
    indexed = {r["id"] for r in _index(tmp_path / "out", "train")}
    assert indexed == set(ids) - {truncated, missing, short, empty}
    assert json.loads((tmp_path / "out" / "report.json").read_text())["missing"][0]["id"] == missing


def test_damaged_videos(tmp_path_factory, tmp_path):
    root = tiny_copy("sthv2", tmp_path_factory, tmp_path / "root")
    ids = [e["id"] for e in json.loads((root / layouts.STHV2_SPLITS["val"]).read_text())]
    video = root / layouts.STHV2_VIDEO_DIR
    corrupt, empty, short, missing = ids[:4]
    (video / f"{corrupt}.webm").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    (video / f"{empty}.webm").write_bytes(b"")
    synth.write_video(video / f"{short}.webm", np.zeros((2, 32, 40, 3), np.uint8), "libvpx")
    (video / f"{missing}.webm").unlink()
    report = prepare("sthv2", root, tmp_path / "out", quiet=True)
    assert {u["id"] for u in report["unreadable"]} == {corrupt, empty}
    assert [t["id"] for t in report["too_short"]] == [short]
    assert [m["id"] for m in report["missing"]] == [missing]
    assert {r["id"] for r in _index(tmp_path / "out", "val")} == set(ids) - {corrupt, empty, short, missing}
    assert report["counts"]["train"] == 12 * TRAIN_PER_CLASS


def test_damaged_mp4(tmp_path_factory, tmp_path):
    root = tiny_copy("minikinetics", tmp_path_factory, tmp_path / "root")
    mp4s = sorted((root / "train").rglob("*.mp4"))
    data = mp4s[0].read_bytes()
    mp4s[0].write_bytes(data[: len(data) // 3])  # cut: moov atom (at the end) is lost
    report = prepare("kinetics", root, tmp_path / "out", quiet=True)
    assert [u["path"] for u in report["unreadable"]] == [str(mp4s[0].relative_to(root))]
