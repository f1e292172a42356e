"""Does the clip loader keep a GPU fed? Its clips per second against raw decoding of the same clips.

Builds a small dataset of realistic-size videos in a temporary folder (default 32 videos of 320x240,
3 s at 24 fps, in three official layouts: Something-V2 .webm, Kinetics .mp4, Something-V1 JPEG frame
folders with the same frames), prepares each with `vidbench prepare`, then measures

* loader: `build_loader(..., train=True)` with W worker processes, 8 segments, the training transforms
  (multi-scale crop, resize to 224, normalisation) and batching, iterated over several epochs (each
  video is listed --repeat times in the index, so that an epoch is long, as in a real dataset); the
  batches finished (resized and normalised) on --device, by default in the main process on the CPU;
* packed: the same loader's batches as its workers deliver them (the uint8 crops packed at their own
  size), each copied once in the main process: what a GPU run does before it resizes and normalises the
  batch on the GPU;
* raw:    the same number W of processes decoding the same kind of clips (8 frames drawn by the same
  segment sampling) to RGB arrays with the loader's own decoding functions (PyAV, one decoding thread
  and one colour converter per process, stopping after the last needed frame; PIL for JPEG folders),
  nothing else; each process is handed a batch of clips at a time, as a loader worker is.

and prints clips/s of each and the ratios to raw (the median of the per-round ratios; the target is
>= 0.8). packed/raw is the figure for a GPU run; loader/raw is CPU training's, where the resize and
the normalisation (a float32 batch, four times the bytes) cost the same cores that decode.
Never part of the tests.

    python benchmarks/loader_speed.py                        # W = 2, every variant
    python benchmarks/loader_speed.py --workers 8 --videos 64 --variants webm
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidbench.data import layouts  # noqa: E402
from vidbench.data.dataset import _decode_video, _load_jpegs, build_loader, read_index, sample_indices  # noqa: E402
from vidbench.data.prepare import prepare  # noqa: E402

VARIANTS = {"webm": "sthv2", "mp4": "kinetics", "frames": "sthv1"}


# --------------------------------------------------------------------------------------------------
# A dataset of realistic-size videos: a textured background panning under two moving objects
# --------------------------------------------------------------------------------------------------
def render(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height + 64, 0:width + 64].astype(np.float32)
    phase = rng.uniform(0, 6.28, 3)
    freq = rng.uniform(0.02, 0.08, 3)
    texture = np.stack([127 + 60 * np.sin(freq[c] * xx + phase[c]) * np.cos(freq[2 - c] * yy) for c in range(3)], -1)
    texture += rng.normal(0, 6, texture.shape).astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    gy, gx = np.mgrid[0:height, 0:width]
    colours = rng.uniform(0, 255, (2, 3))
    for t in range(frames):
        dy, dx = int(32 + 30 * np.sin(t / 15)), int(t * 64 // frames)
        img = texture[dy:dy + height, dx:dx + width].copy()
        for k in range(2):
            cy = height * (0.3 + 0.4 * k) + 20 * np.sin(t / (6 + k))
            cx = width * (t / frames if k == 0 else 1 - t / frames)
            img[(gy - cy) ** 2 + (gx - cx) ** 2 < (18 + 6 * k) ** 2] = colours[k]
        out[t] = img.clip(0, 255)
    return out


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libvpx-vp9" if path.suffix == ".webm" else "libx264"
    options = {"libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"},
               "libx264": {"crf": "23", "preset": "veryfast"}}[codec]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def build_datasets(base: Path, variants, videos: int, size: tuple[int, int], seconds: float, fps: int) -> dict:
    """{variant: prepared dir}; the same frames in every layout."""
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = [f"Moving something {k}" for k in range(4)]
    clips = [render(rng, int(seconds * fps), size[1], size[0]) for _ in range(videos)]
    ids = [str(1000 + i) for i in range(videos)]
    labels = [i % len(classes) for i in range(videos)]
    prepared = {}
    for variant in variants:
        root = base / variant
        fmt = VARIANTS[variant]
        prepared[variant] = base / f"{variant}-prepared"
        if (prepared[variant] / "report.json").exists():  # --keep: built by an earlier run
            continue
        if fmt == "sthv2":
            for vid, clip in zip(ids, clips):
                write_video(root / layouts.STHV2_VIDEO_DIR / f"{vid}.webm", clip, fps)
            (root / layouts.STHV2_LABELS).write_text(json.dumps({c: str(i) for i, c in enumerate(classes)}))
            for split in ("train", "val"):  # prepare needs a val split: the first videos serve
                rows = [{"id": v, "label": classes[c], "template": classes[c], "placeholders": []}
                        for v, c in zip(ids, labels)]
                (root / layouts.STHV2_SPLITS[split]).write_text(json.dumps(rows if split == "train" else rows[:2]))
        elif fmt == "kinetics":
            lines = {"train": [], "val": []}
            for k, (vid, clip, c) in enumerate(zip(ids, clips, labels)):
                for split in ("train", "val") if k < 2 else ("train",):  # prepare needs a val split
                    stem = layouts.kinetics_stem('yt' + vid, 0, 10)
                    write_video(root / split / classes[c] / f"{stem}.mp4", clip, fps)
                    lines[split].append(f"{classes[c]},yt{vid},0,10,{split}")
            for split in ("train", "val"):
                (root / layouts.KINETICS_SPLITS[split]).write_text(
                    "\n".join([",".join(layouts.KINETICS_HEADER)] + lines[split]) + "\n")
        else:
            for vid, clip in zip(ids, clips):
                folder = root / layouts.STHV1_VIDEO_DIR / vid
                folder.mkdir(parents=True)
                for i, frame in enumerate(clip):
                    Image.fromarray(frame).save(folder / layouts.frame_name(i), quality=90)
            (root / layouts.STHV1_LABELS).write_text("\n".join(classes) + "\n")
            (root / layouts.STHV1_SPLITS["train"]).write_text("".join(f"{v};{classes[c]}\n" for v, c in zip(ids, labels)))
            (root / layouts.STHV1_SPLITS["val"]).write_text("".join(f"{v};{classes[c]}\n" for v, c in zip(ids[:2], labels)))
        prepare(fmt, root, prepared[variant], quiet=True)
    return prepared


def repeat_index(prepared: Path, times: int) -> None:
    """List every training video `times` times: epochs long enough that the last batches of an epoch,
    when some workers already wait for the next one, weigh as little as in a real dataset."""
    index = prepared / "train.csv"
    header, *rows = index.read_text().splitlines()
    videos = [row.split(",", 1) for row in rows if "#" not in row.split(",", 1)[0]]  # once each (--keep reruns)
    copies = [f"{vid}#{r},{rest}" if r else f"{vid},{rest}" for r in range(times) for vid, rest in videos]
    index.write_text("\n".join([header] + copies) + "\n")


# --------------------------------------------------------------------------------------------------
# Raw decoding: the same clips, no transforms, the same number of processes
# --------------------------------------------------------------------------------------------------
def raw_clip(job) -> int:
    """Decode a clip's frames to RGB arrays with the loader's own decoding, and nothing else."""
    kind, path, indices = job
    return len(_load_jpegs(Path(path), indices) if kind == "frames" else _decode_video(Path(path), indices))


def raw_jobs(prepared: Path, epochs: int, seed: int) -> list:
    import torch

    meta = json.loads((prepared / "meta.json").read_text())
    generator = torch.Generator().manual_seed(seed)
    return [(meta["kind"], str(Path(meta["root"]) / rel), sample_indices(n, 8, True, generator).tolist())
            for _ in range(epochs) for _, rel, n, _ in read_index(prepared, "train")]


def time_raw(prepared: Path, workers: int, epochs: int, batch_size: int) -> float:
    """Clips/s of bare decoding; each process takes `batch_size` clips at a time, as a loader worker does
    (one clip at a time, the messages alone cost the processes ~5% and make the figure noisy)."""
    jobs = raw_jobs(prepared, epochs, seed=1)
    with mp.get_context("fork").Pool(max(1, workers)) as pool:
        # warm-up: processes, codecs, page cache
        pool.map(raw_clip, raw_jobs(prepared, 1, seed=0), chunksize=batch_size)
        start = time.perf_counter()
        pool.map(raw_clip, jobs, chunksize=batch_size)
        return len(jobs) / (time.perf_counter() - start)


def time_loader(prepared: Path, workers: int, epochs: int, batch_size: int, device=None, finish=True) -> float:
    """Clips/s of build_loader: finished float32 batches (resized and normalised on `device`, default the CPU),
    or with finish=False the workers' packed uint8 batches, each copied once in the main process as a GPU
    run copies them to pinned memory (resize and normalisation then happen on the GPU)."""
    import torch

    loader = build_loader(prepared, "train", train=True, num_segments=8, input_size=224, scale_size=256, flip=False,
                          batch_size=batch_size, workers=workers, seed=0, cache=False, device=device)
    if not finish:
        loader = loader.packed()
    for _ in loader:  # warm-up epoch: worker start-up, page cache
        pass
    clips = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch, labels, skipped in loader:
            if finish:
                assert batch.shape[1:] == (8, 3, 224, 224) and skipped == 0
            else:
                batch.buffer[:batch.nbytes].clone()  # the staging copy
            clips += len(labels)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return clips / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="loader workers = raw decoding processes (default 2)")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos (default 320x240)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2, help="timed passes over the index (after one warm-up)")
    parser.add_argument("--repeat", type=int, default=16, help="times each video is listed in the index (default 16)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="alternating raw/loader measurements (median)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default=None,
                        help="normalise batches on this device, as training does (default: the CPU)")
    parser.add_argument("--keep", help="build the dataset in this folder and keep it, or reuse it (default: a "
                        "temporary folder)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))

    import torch

    from vidbench.engine import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as `vidbench train` and `evaluate` do (and forked workers inherit)
    with tempfile.TemporaryDirectory(prefix="loader-speed-") as tmp:
        base = Path(args.keep or tmp)
        base.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        # Built in a child process: rendering leaves this process's heap large, and pages its forked loader
        # workers share with it turn every later allocation here into copy-on-write faults (a trainer
        # starts its workers while small).
        builder = mp.get_context("fork").Process(target=build_datasets,
                                                 args=(base, args.variants, args.videos, size, args.seconds, args.fps))
        builder.start()
        builder.join()
        if builder.exitcode:
            return builder.exitcode
        prepared = {variant: base / f"{variant}-prepared" for variant in args.variants}
        for folder in prepared.values():
            repeat_index(folder, args.repeat)
        print(f"{args.videos} videos of {size[0]}x{size[1]}, {args.seconds:g} s at {args.fps} fps "
              f"({int(args.seconds * args.fps)} frames) each listed {args.repeat} times, built in "
              f"{time.perf_counter() - started:.1f} s; "
              f"{args.workers} worker process(es), 8 segments, 224x224 crops, batch {args.batch_size}; "
              f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}, torch {torch.__version__}")
        where = args.device or "cpu"
        print(f"clips/s, median of {args.rounds} alternating rounds [min-max], ratios: median of the rounds' ratios; "
              f"loader = finished float32 batches "
              f"(on {where}); packed = the workers' uint8 batches, copied once")
        print(f"{'variant':8} {'loader':>18} {'packed':>18} {'raw':>18} {'loader/raw':>11} {'packed/raw':>11}")
        for variant in args.variants:
            times = {"raw": [], "loader": [], "packed": []}
            for _ in range(args.rounds):  # alternate, so that a busy moment of a shared machine hits all
                times["raw"].append(time_raw(prepared[variant], args.workers, args.epochs, args.batch_size))
                times["loader"].append(time_loader(prepared[variant], args.workers, args.epochs, args.batch_size,
                                                   args.device))
                times["packed"].append(time_loader(prepared[variant], args.workers, args.epochs, args.batch_size,
                                                   finish=False))
            med = {k: statistics.median(v) for k, v in times.items()}
            ratio = {k: statistics.median(a / b for a, b in zip(times[k], times["raw"])) for k in ("loader", "packed")}
            cell = lambda k: f"{med[k]:6.1f} [{min(times[k]):.0f}-{max(times[k]):.0f}]"  # noqa: E731
            print(f"{variant:8} {cell('loader'):>18} {cell('packed'):>18} {cell('raw'):>18} "
                  f"{ratio['loader']:11.2f} {ratio['packed']:11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
