"""Clip loader: segment sampling, crops, shapes, caching, skipping unreadable samples, determinism."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from fixtures_data import tiny_root

from vidbench.data import dataset as ds
from vidbench.data import transforms as tf
from vidbench.data.prepare import prepare

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
KW = dict(num_segments=8, input_size=32, scale_size=36, mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = {}
    for fmt in ("sthv1", "sthv2", "minikinetics"):
        out[fmt] = tmp_path_factory.mktemp(f"prep-{fmt}")
        prepare(fmt, tiny_root(fmt, tmp_path_factory), out[fmt], quiet=True)
    return out


def test_eval_indices_are_segment_centres():
    assert ds.sample_indices(16, 8, False).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert ds.sample_indices(8, 8, False).tolist() == list(range(8))
    assert ds.sample_indices(20, 4, False).tolist() == [2, 7, 12, 17]
    n, t = 13, 8
    assert ds.sample_indices(n, t, False).tolist() == [int((i + 0.5) * n / t) for i in range(t)]
    # shorter than T: frames repeat in order
    short = ds.sample_indices(3, 8, False).tolist()
    assert short == sorted(short) and set(short) == {0, 1, 2}


def test_train_indices_stay_within_their_segment():
    g = torch.Generator().manual_seed(0)
    for n in (3, 8, 13, 24, 100):
        seen = set()
        for _ in range(200):
            idx = ds.sample_indices(n, 8, True, g)
            assert idx.shape == (8,) and idx.dtype == np.int64
            assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < n
            for i, k in enumerate(idx):
                assert np.floor(i * n / 8) <= k <= min(n - 1, np.floor((i + 1) * n / 8))
            seen.add(tuple(idx))
        assert len(seen) > 1 or n <= 8


def test_crop_geometry():
    assert len(tf.fixed_offsets(48, 64, 32, 32)) == 13
    assert len(set(tf.fixed_offsets(48, 64, 24, 24))) == 13
    for h, w in ((32, 40), (48, 64), (256, 340)):
        for ch, cw in tf.crop_sizes(h, w, 32 if h < 100 else 224):
            assert 0 < ch <= h and 0 < cw <= w
            for top, left in tf.fixed_offsets(h, w, ch, cw):
                assert 0 <= top <= h - ch and 0 <= left <= w - cw


def test_same_crop_and_flip_for_every_frame():
    frame = torch.randint(0, 256, (1, 40, 56, 3), dtype=torch.uint8)
    frames = frame.repeat(6, 1, 1, 1)
    g = torch.Generator().manual_seed(1)
    transform = tf.ClipTransform(train=True, input_size=32, scale_size=36, flip=True, mean=MEAN, std=STD)
    flipped = set()
    for _ in range(20):
        clip = transform(frames, g)
        assert clip.shape == (6, 3, 32, 32) and clip.dtype == torch.float32
        assert torch.equal(clip, clip[:1].expand_as(clip))
    # flip happens for some draws; never without flip=True
    ramp = torch.arange(56, dtype=torch.uint8).view(1, 1, 56, 1).expand(2, 40, 56, 3).contiguous()
    for _ in range(20):
        clip = transform(ramp, g)
        flipped.add(bool(clip[0, 0, 0, 0] > clip[0, 0, 0, -1]))
    assert flipped == {True, False}
    no_flip = tf.ClipTransform(train=True, input_size=32, scale_size=36, flip=False, mean=MEAN, std=STD)
    assert all(no_flip(ramp, g)[0, 0, 0, 0] < no_flip(ramp, g)[0, 0, 0, -1] for _ in range(10))


def test_the_device_resize_in_float_agrees_with_the_cpu_uint8_kernel():
    """A GPU run resizes the packed crops in float32 (no uint8 kernel there): within one grey level of the
    CPU's uint8 result, for the upscaling and downscaling crops of the training transform."""
    g = torch.Generator().manual_seed(0)
    for h, w in ((66, 75), (100, 87), (240, 210), (300, 280)):
        clip = torch.randint(0, 256, (4, h, w, 3), dtype=torch.uint8, generator=g).permute(0, 3, 1, 2)
        on_cpu, in_float = tf.resize(clip, (224, 224)), tf.resize(clip.float(), (224, 224))
        assert on_cpu.dtype == torch.uint8 and in_float.dtype == torch.float32
        assert (in_float - on_cpu.float()).abs().max() < 1.01  # the uint8 kernel rounds (fixed-point weights)


def test_eval_transform_is_resize_then_centre_crop():
    frames = torch.zeros(1, 40, 60, 3, dtype=torch.uint8)
    frames[:, 15:25, 25:35] = 255  # a centred white square stays centred
    clip = tf.ClipTransform(train=False, input_size=32, scale_size=40, mean=(0, 0, 0), std=(1, 1, 1))(frames)
    assert clip.shape == (1, 3, 32, 32)
    img = clip[0, 0]
    assert torch.allclose(img, img.flip(-1), atol=1e-6) and torch.allclose(img, img.flip(-2), atol=1e-6)
    assert img[16, 16] == 1.0 and img[0, 0] == 0.0


@pytest.mark.parametrize("fmt", ["sthv1", "sthv2", "minikinetics"])
def test_dataset_shapes(fmt, prepared):
    for split, train in (("train", True), ("val", False)):
        data = ds.ClipDataset(prepared[fmt], split, train=train, flip=fmt == "minikinetics", **KW)
        clip, label = data[0]
        assert clip.shape == (8, 3, 32, 32) and clip.dtype == torch.float32 and isinstance(label, int)
        assert 0 <= label < ds.num_classes(prepared[fmt])
        assert -2.5 < float(clip.min()) and float(clip.max()) < 2.5
    assert len(ds.class_names(prepared[fmt])) == ds.num_classes(prepared[fmt])


def test_eval_is_deterministic_and_cache_matches(prepared):
    for fmt in ("sthv1", "sthv2"):
        plain = ds.ClipDataset(prepared[fmt], "val", train=False, **KW)
        cached = ds.ClipDataset(prepared[fmt], "val", train=False, cache=True, **KW)
        for i in range(3):
            a, b, c = plain[i][0], cached[i][0], cached[i][0]
            assert torch.equal(a, plain[i][0]) and torch.equal(a, b) and torch.equal(b, c)
        assert len(cached.cache) == 3 and cached.cache[0].dtype == np.uint8


def test_shared_cache_decodes_each_video_once_for_every_run(prepared, tmp_path, monkeypatch, caplog):
    for fmt in ("sthv1", "sthv2"):  # frame folders and videos
        store = ds.DecodedStore(tmp_path / fmt)
        first = ds.ClipDataset(prepared[fmt], "val", train=False, cache=True, store=store, **KW)
        clips = [first[i][0] for i in range(3)]
        assert len(list(store.folder.glob("*.npy"))) == 3
        with monkeypatch.context() as patch:  # a later run (another process) reads what the first decoded
            patch.setattr(ds, "_load_jpegs", None)
            patch.setattr(ds, "_decode_video", None)
            later = ds.ClipDataset(prepared[fmt], "val", train=False, cache=True, store=store, **KW)
            assert all(torch.equal(later[i][0], clip) for i, clip in enumerate(clips))
        plain = ds.ClipDataset(prepared[fmt], "val", train=False, **KW)
        assert all(torch.equal(plain[i][0], clip) for i, clip in enumerate(clips))

    data = ds.ClipDataset(prepared["sthv1"], "val", train=False, cache=True, store=ds.DecodedStore(tmp_path / "s"), **KW)
    stored = data.store.file(data.path(0))
    data[0]
    stored.write_bytes(b"torn")  # unreadable: decoded and written again
    again = ds.ClipDataset(prepared["sthv1"], "val", train=False, cache=True, store=data.store, **KW)
    assert torch.equal(again[0][0], data[0][0]) and np.load(stored).dtype == np.uint8

    (tmp_path / "blocked").write_text("a file where the folder should be")
    blocked = ds.ClipDataset(prepared["sthv1"], "val", train=False, cache=True,
                             store=ds.DecodedStore(tmp_path / "blocked"), **KW)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(blocked[0][0], data[0][0])  # sharing fails, the sample does not
    assert "not sharing decoded frames" in caplog.text


def test_shared_cache_decodes_a_changed_video_anew(prepared, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ds.ClipDataset(prepared["sthv2"], "val", train=False, **KW).root, root)
    index = tmp_path / "prep"
    shutil.copytree(prepared["sthv2"], index)
    meta = index / "meta.json"
    meta.write_text(meta.read_text().replace(str(ds.ClipDataset(prepared["sthv2"], "val", train=False, **KW).root),
                                             str(root)))
    store = ds.DecodedStore(tmp_path / "store")
    data = ds.ClipDataset(index, "val", train=False, cache=True, store=store, **KW)
    before = store.file(data.path(0))
    data[0]
    other = data.path(1).read_bytes()
    data.path(0).write_bytes(other)  # a regenerated video
    assert store.file(data.path(0)) != before
    fresh = ds.ClipDataset(index, "val", train=False, cache=True, store=store, **KW)
    assert torch.equal(fresh[0][0], ds.ClipDataset(index, "val", train=False, cache=True, **KW)[0][0])


def test_unreadable_sample_returns_none_and_warns_once(prepared, tmp_path, caplog):
    # a prepared index whose root is a copy we can damage after preparing
    src = ds.ClipDataset(prepared["sthv1"], "val", train=False, **KW)
    root = tmp_path / "root"
    shutil.copytree(src.root, root)
    out = tmp_path / "prep"
    prepare("sthv1", root, out, quiet=True)
    data = ds.ClipDataset(out, "val", train=False, **KW)
    shutil.rmtree(data.path(1))
    jpg = data.path(2) / "00001.jpg"
    jpg.write_bytes(jpg.read_bytes()[:100])
    for k in range(1, 20):  # every frame of sample 3 may be drawn: make all but the first smaller
        frame = data.path(3) / f"{k + 1:05d}.jpg"
        if frame.exists():
            Image.open(frame).resize((8, 8)).save(frame)
    with caplog.at_level(logging.WARNING, logger="vidbench.data.dataset"):
        assert data[1] is None and data[1] is None
        assert data[0] is not None
        assert data[3] is None and "differ in size" in data.unreadable[str(data.path(3))]
    assert sum(str(data.path(1)) in r.getMessage() for r in caplog.records) == 1
    loader = ds.build_loader(out, "val", train=False, num_segments=4, input_size=32, scale_size=36, flip=False,
                             batch_size=64, workers=0, seed=0, cache=False, mean=MEAN, std=STD)
    clips, labels, skipped = next(iter(loader))
    assert skipped >= 1 and clips.shape[0] == labels.shape[0] == len(data) - skipped


def test_collate_skip():
    item = (torch.zeros(4, 3, 8, 8), 3)
    clips, labels, skipped = ds.collate_skip([item, None, item, None])
    assert clips.shape == (2, 4, 3, 8, 8) and labels.tolist() == [3, 3] and labels.dtype == torch.long
    assert skipped == 2
    clips, labels, skipped = ds.collate_skip([None])
    assert clips.numel() == 0 and labels.numel() == 0 and skipped == 1


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y, _ in loader]


def test_build_loader_is_deterministic(prepared):
    kwargs = dict(train=True, num_segments=4, input_size=32, scale_size=36, flip=False, batch_size=8,
                  cache=False, mean=MEAN, std=STD)
    a = _epoch(ds.build_loader(prepared["sthv1"], "train", workers=0, seed=7, **kwargs))
    b = _epoch(ds.build_loader(prepared["sthv1"], "train", workers=0, seed=7, **kwargs))
    c = _epoch(ds.build_loader(prepared["sthv1"], "train", workers=0, seed=8, **kwargs))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(a, c))
    assert sum(len(y) for _, y in a) == 24  # drop_last=False: every sample


def test_batches_do_not_depend_on_the_workers(prepared):
    kwargs = dict(train=True, num_segments=4, input_size=32, scale_size=36, flip=True, batch_size=5,
                  cache=False, mean=MEAN, std=STD, seed=11)
    epochs = {workers: _epoch(ds.build_loader(prepared["sthv2"], "train", workers=workers, **kwargs))
              for workers in (0, 1, 3)}
    for workers in (1, 3):
        assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(epochs[0], epochs[workers]))


def test_reseeding_the_generator_replays_an_epoch(prepared):
    """What a resumed training relies on: epoch k's batches follow from the seed set before it alone."""
    kwargs = dict(train=True, num_segments=4, input_size=32, scale_size=36, flip=True, batch_size=4,
                  cache=False, mean=MEAN, std=STD, workers=2, seed=0)
    running = ds.build_loader(prepared["sthv1"], "train", **kwargs)
    for epoch in range(2):
        running.generator.manual_seed(100 + epoch)
        last = _epoch(running)
    resumed = ds.build_loader(prepared["sthv1"], "train", **kwargs)
    resumed.generator.manual_seed(101)
    replay = _epoch(resumed)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(last, replay))


def test_build_loader_with_workers_is_deterministic(prepared):
    kwargs = dict(train=True, num_segments=4, input_size=32, scale_size=36, flip=True, batch_size=12,
                  cache=True, mean=MEAN, std=STD, workers=1, seed=3)
    la = ds.build_loader(prepared["sthv2"], "train", **kwargs)
    lb = ds.build_loader(prepared["sthv2"], "train", **kwargs)
    a1, b1 = _epoch(la), _epoch(lb)
    a2, b2 = _epoch(la), _epoch(lb)  # second epoch: persistent workers, cache reused
    for ea, eb in ((a1, b1), (a2, b2)):
        assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(ea, eb))
    assert not torch.equal(a1[0][0], a2[0][0])


def _cut(value, frames: int = 4, height: int = 8, width: int = 8) -> list[np.ndarray]:
    """A cut as `ClipTransform.cut` leaves it: T uint8 [h, w, 3] frames (a value, or a ramp along the width)."""
    row = np.arange(width, dtype=np.uint8)[:, None] * 7 if value is None else np.full((width, 1), value, np.uint8)
    return [np.broadcast_to(row, (height, width, 3)) for _ in range(frames)]


def test_batch_ring_packs_cuts_at_their_size_and_falls_back_while_busy():
    ring = ds.BatchRing(1, 2, 3, frames=4, size=8, room=8, shared=False)
    first, shapes, labels, skipped = ring([(_cut(1, height=6, width=5), 5), None, (_cut(None), 6)])
    assert first == ds.Slot(0, 0) and shapes == ((6, 5), (8, 8)) and labels == [5, 6] and skipped == 1
    clips = list(ring.take(first, shapes).clips())
    assert clips[0].shape == (4, 6, 5, 3) and clips[0].eq(1).all()
    assert torch.equal(clips[1], torch.from_numpy(np.stack(_cut(None))))
    second, shapes, _, _ = ring([(_cut(3), 0)])
    assert second == ds.Slot(0, 1) and next(ring.take(second, shapes).clips()).eq(3).all()
    # slot 0 is still being read: the next batch travels as a tensor, and slot 0 keeps its clips
    fallback, shapes, labels, _ = ring([(_cut(4), 7)])
    assert torch.is_tensor(fallback) and fallback.numel() == 4 * 8 * 8 * 3 and fallback.eq(4).all()
    assert labels == [7] and next(ring.take(first, ((6, 5),)).clips()).eq(1).all()
    ring.release(first)
    ring.release(second)
    reused, shapes, _, _ = ring([(_cut(9), 1)])
    assert reused == ds.Slot(0, 1) and next(ring.take(reused, shapes).clips()).eq(9).all()
    nothing, shapes, labels, skipped = ring([None, None])
    assert nothing.numel() == 0 and shapes == () and labels == [] and skipped == 2


def test_batch_ring_resizes_in_the_worker_only_what_would_overfill_its_slot():
    ring = ds.BatchRing(1, 1, 2, frames=4, size=8, room=9, shared=False)  # room for 2 x 81 pixels a frame
    big, small = _cut(None, height=12, width=10), _cut(None, height=9, width=9)
    ref, shapes, _, _ = ring([(big, 0), (small, 1)])  # 120 + 64 kept for the other > 162: big is resized
    assert shapes == ((8, 8), (9, 9))
    resized, kept = ring.take(ref, shapes).clips()
    expected = tf.resize(torch.from_numpy(np.stack(big)).permute(0, 3, 1, 2), (8, 8)).permute(0, 2, 3, 1)
    assert torch.equal(resized, expected) and torch.equal(kept, torch.from_numpy(np.stack(small)))
    ring.release(ref)
    ref, shapes, _, _ = ring([(small, 0), (small, 1)])  # 81 + 81 fits
    assert shapes == ((9, 9), (9, 9))


def test_the_training_flip_before_the_resize_equals_the_flip_after():
    frames = torch.randint(0, 256, (3, 40, 56, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = tf.ClipTransform(train=True, input_size=32, scale_size=36, flip=True, mean=MEAN, std=STD)
    flips = set()
    for seed in range(12):
        clip = transform(frames, torch.Generator().manual_seed(seed))
        draws = torch.Generator().manual_seed(seed)
        top, left, ch, cw = tf.multiscale_crop_box(40, 56, 32, draws)
        flipped = int(torch.randint(2, (1,), generator=draws)) == 1
        expected = tf.resize(frames[:, top:top + ch, left:left + cw].permute(0, 3, 1, 2), (32, 32))
        expected = tf.normalize(expected.flip(-1) if flipped else expected, MEAN, STD)
        assert torch.equal(clip, expected)
        flips.add(flipped)
    assert flips == {True, False}


def test_loader_batches_equal_the_dataset_samples(prepared):
    kwargs = dict(train=False, num_segments=4, input_size=32, scale_size=36, flip=False, cache=False,
                  mean=MEAN, std=STD)
    data = ds.ClipDataset(prepared["sthv1"], "val", num_segments=4, input_size=32, scale_size=36, mean=MEAN,
                          std=STD, train=False)
    expected = torch.stack([data[i][0] for i in range(len(data))])
    for workers in (0, 2):
        loader = ds.build_loader(prepared["sthv1"], "val", batch_size=3, workers=workers, **kwargs)
        for _ in range(2):  # the second epoch reads the same slots again
            got = torch.cat([clips for clips, _, _ in loader])
            assert got.is_contiguous() and torch.allclose(got, expected, atol=1e-5)
        packed = [([clip.clone() for clip in batch.clips()], labels) for batch, labels, _ in loader.packed()]
        clips = torch.stack([clip for batch, _ in packed for clip in batch])  # evaluation cuts are finished
        assert clips.dtype == torch.uint8 and clips.shape == (len(data), 4, 32, 32, 3)
        assert torch.allclose(tf.normalize(clips.permute(0, 1, 4, 2, 3), MEAN, STD), expected, atol=1e-5)
        assert torch.cat([labels for _, labels in packed]).tolist() == data.labels()
        assert not loader.ring.busy.any()


def test_training_batches_equal_the_samples_of_the_same_draws(prepared):
    kwargs = dict(num_segments=4, input_size=32, scale_size=36, flip=True, mean=MEAN, std=STD)
    data = ds.ClipDataset(prepared["sthv2"], "train", train=True, **kwargs)
    loader = ds.build_loader(prepared["sthv2"], "train", train=True, batch_size=4, workers=2, seed=5, cache=False,
                             **kwargs)
    loader.generator.manual_seed(3)
    draws = list(loader.loader.sampler)
    loader.generator.manual_seed(3)
    got = torch.cat([clips for clips, _, _ in loader])
    expected = torch.stack([data._sample(i, seed)[0] for i, seed in draws])
    assert torch.equal(got, expected)


def test_an_epoch_left_unfinished_does_not_stall_the_next(prepared):
    loader = ds.build_loader(prepared["sthv2"], "train", train=True, num_segments=4, input_size=32, scale_size=36,
                             flip=False, batch_size=2, workers=2, seed=0, cache=False, mean=MEAN, std=STD)
    for epoch in range(3):
        for step, (clips, labels, _) in enumerate(loader.packed()):
            if step == 1:
                break  # the workers keep filling (and holding) slots for batches nobody reads
    assert sum(len(labels) for _, labels, _ in loader) == len(loader.dataset)


def test_an_iterator_dropped_after_the_next_epoch_began_frees_nothing(prepared):
    loader = ds.build_loader(prepared["sthv1"], "val", train=False, num_segments=4, input_size=32, scale_size=36,
                             flip=False, batch_size=2, workers=0, cache=False, mean=MEAN, std=STD).packed()
    stale = iter(loader)
    next(stale)
    fresh = iter(loader)
    batch, _, _ = next(fresh)
    first = [clip.clone() for clip in batch.clips()]
    del stale  # closes the old epoch's generator
    assert loader.ring.busy.all()
    assert all(torch.equal(clip, kept) for clip, kept in zip(batch.clips(), first))


def test_too_little_shared_memory_is_a_clear_error_before_any_batch(prepared, monkeypatch):
    monkeypatch.setattr(ds, "SHARED_MEMORY", prepared["sthv1"])  # any folder: its free space is faked
    monkeypatch.setattr(ds.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    kwargs = dict(train=True, num_segments=8, input_size=224, scale_size=256, flip=False, batch_size=64, seed=0,
                  cache=False, mean=MEAN, std=STD)
    with pytest.raises(RuntimeError, match=r"needs \d+\.\d\d GiB of shared memory .* has 0\.00 GiB free: lower data"):
        ds.build_loader(prepared["sthv1"], "train", workers=2, **kwargs)
    assert not ds.build_loader(prepared["sthv1"], "train", workers=0, **kwargs).ring.slots.is_shared()
