"""`vidbench synth`: official layouts, determinism, class semantics of the synthetic suite."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from fixtures_data import TRAIN_PER_CLASS, VAL_PER_CLASS, read_semicolon, tiny_root, tree_bytes

from vidbench.cli import main as cli_main
from vidbench.data import layouts, synth
from vidbench.errors import InputError


def _frame_folder_ok(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{i:05d}.jpg" for i in range(1, len(names) + 1)]
    assert synth.MIN_LEN <= len(names) <= synth.MAX_LEN


@pytest.mark.parametrize("fmt", ["sthv1", "jester"])
def test_layout_frame_datasets(fmt, tmp_path_factory):
    root = tiny_root(fmt, tmp_path_factory)
    if fmt == "sthv1":
        video_dir, labels, splits, test = (layouts.STHV1_VIDEO_DIR, layouts.STHV1_LABELS, layouts.STHV1_SPLITS,
                                           layouts.STHV1_TEST)
        pairs = synth.STHV1_PAIRS
    else:
        video_dir, labels, splits, test = (layouts.JESTER_VIDEO_DIR, layouts.JESTER_LABELS, layouts.JESTER_SPLITS,
                                           layouts.JESTER_TEST)
        pairs = synth.JESTER_PAIRS
    assert (root / ".complete").is_file()
    names = (root / labels).read_text().splitlines()
    assert names == [c[0] for c in synth.temporal_classes(pairs)]
    assert len(names) == 2 * len(pairs)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        rows = read_semicolon(root / splits[split])
        assert len(rows) == per_class * len(names)
        assert sorted(set(rows.values())) == sorted(names)
        for vid in rows:
            assert vid.isdigit()
            _frame_folder_ok(root / video_dir / vid)
    test_ids = (root / test).read_text().splitlines()
    assert test_ids and all(t.isdigit() and (root / video_dir / t).is_dir() for t in test_ids)
    # frame sizes vary per video within the documented ranges
    from PIL import Image

    sizes = {Image.open(next((root / video_dir).iterdir()) / "00001.jpg").size}
    for folder in list((root / video_dir).iterdir())[:20]:
        w, h = Image.open(folder / "00001.jpg").size
        assert w in synth.WIDTHS and h in synth.HEIGHTS
        sizes.add((w, h))
    assert len(sizes) > 1


def test_layout_sthv2(tmp_path_factory):
    root = tiny_root("sthv2", tmp_path_factory)
    labels = json.loads((root / layouts.STHV2_LABELS).read_text())
    assert sorted(int(v) for v in labels.values()) == list(range(12))
    assert all(isinstance(v, str) and "[" not in k for k, v in labels.items())
    for split in ("train", "val"):
        entries = json.loads((root / layouts.STHV2_SPLITS[split]).read_text())
        assert len(entries) == (TRAIN_PER_CLASS if split == "train" else VAL_PER_CLASS) * 12
        for e in entries:
            assert set(e) == {"id", "label", "template", "placeholders"}
            assert "[something]" in e["template"] and len(e["placeholders"]) == e["template"].count("[something]")
            assert e["template"].replace("[", "").replace("]", "") in labels
            assert (root / layouts.STHV2_VIDEO_DIR / f"{e['id']}.webm").is_file()
    assert all(set(e) == {"id"} for e in json.loads((root / layouts.STHV2_TEST).read_text()))


def test_layout_minikinetics(tmp_path_factory):
    root = tiny_root("minikinetics", tmp_path_factory)
    subset = (root / layouts.MINI_CLASSES).read_text().splitlines()
    assert len(subset) == synth.MINI_SUBSET
    all_labels = set()
    for split in ("train", "val"):
        lines = (root / layouts.KINETICS_SPLITS[split]).read_text().splitlines()
        assert lines[0] == "label,youtube_id,time_start,time_end,split"
        rows = list(csv.DictReader(lines))
        ids = set((root / layouts.MINI_IDS[split]).read_text().split())
        listed = [r for r in rows if r["youtube_id"] in ids]
        per_class = TRAIN_PER_CLASS if split == "train" else VAL_PER_CLASS
        assert len(listed) == per_class * len(subset)
        assert {r["label"] for r in listed} == set(subset)
        assert len(rows) > len(listed)  # videos outside the subset exist (extra classes + unlisted videos)
        for r in rows:
            assert r["split"] == split and re.fullmatch(r"[A-Za-z0-9_-]{11}", r["youtube_id"])
            name = f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}.mp4"
            assert (root / split / r["label"] / name).is_file()
            all_labels.add(r["label"])
    assert set(subset) < all_labels


def test_generate_is_deterministic(tmp_path):
    for fmt in ("sthv1", "sthv2", "minikinetics"):
        synth.generate(fmt, tmp_path / f"a-{fmt}", train_per_class=1, val_per_class=1, seed=3)
        synth.generate(fmt, tmp_path / f"b-{fmt}", train_per_class=1, val_per_class=1, seed=3)
        a, b = tree_bytes(tmp_path / f"a-{fmt}"), tree_bytes(tmp_path / f"b-{fmt}")
        assert a.keys() == b.keys() and a == b, fmt
    synth.generate("sthv1", tmp_path / "c", train_per_class=1, val_per_class=1, seed=4)
    assert tree_bytes(tmp_path / "c") != tree_bytes(tmp_path / "a-sthv1")
    assert not list(tmp_path.glob(".*tmp*")), "temporary folders left behind"


def test_generate_replaces_own_output_but_not_foreign_folders(tmp_path):
    root = tmp_path / "d"
    root.mkdir()  # an empty folder (as Snakemake creates for outputs) is fine
    synth.generate("jester", root, train_per_class=1, val_per_class=1)
    marker = json.loads((root / ".complete").read_text())
    assert marker["format"] == "jester" and marker["train"] == 10
    synth.generate("jester", root, train_per_class=1, val_per_class=1, seed=1)  # regenerate over own output
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(InputError):
        synth.generate("jester", foreign, train_per_class=1, val_per_class=1)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_cli_synth(tmp_path):
    assert cli_main(["synth", "--format", "jester", "--out", str(tmp_path / "j"), "--train-per-class", "1",
                     "--val-per-class", "1", "--seed", "2"]) == 0
    assert (tmp_path / "j" / ".complete").is_file()


@pytest.mark.parametrize("pairs", [synth.STHV1_PAIRS, synth.STHV2_PAIRS, synth.JESTER_PAIRS])
def test_reversed_partner_has_the_same_frames_in_reverse(pairs):
    """A class and its partner differ only in frame order: an order-blind model cannot separate them."""
    classes = synth.temporal_classes(pairs)
    for k in range(0, len(classes), 2):
        fwd, rev = classes[k], classes[k + 1]
        assert fwd[1] is rev[1] and not fwd[3] and rev[3]
        a = synth.render_temporal(synth.Renderer(np.random.default_rng(0)), np.random.default_rng(5), fwd, 14, 40, 56)
        b = synth.render_temporal(synth.Renderer(np.random.default_rng(0)), np.random.default_rng(5), rev, 14, 40, 56)
        # identical frames up to the per-frame sensor noise, in reversed order
        diff = np.abs(a.astype(int) - b[::-1].astype(int)).mean()
        assert diff < 2 * synth.NOISE_STD, (fwd[0], diff)
        # and the state really changes over time, well above the noise-only difference
        assert np.abs(a[0].astype(int) - a[-1].astype(int)).mean() > 1.3 * diff, fwd[0]


def test_appearance_classes_differ_but_motion_is_random():
    rng = np.random.default_rng(0)
    renderer = synth.Renderer(rng)
    looks = synth.KINETICS_LOOKS
    # mean colour of frames separates classes far better than within-class variation
    means = np.array([[synth.render_appearance(renderer, rng, look, 4, 40, 48).mean(axis=(0, 1, 2))
                       for _ in range(3)] for look in looks[:6]])
    within = np.abs(means - means.mean(axis=1, keepdims=True)).mean()
    between = np.abs(means.mean(axis=1)[:, None] - means.mean(axis=1)[None]).mean()
    assert between > within
