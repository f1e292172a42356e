"""`vidbench extract`: decode a prepared video dataset into JPEG frame folders (optional, sharded, resumable).

Something-V2 and Kinetics ship videos; decoding them on the fly is the default. For long or large videos
(Kinetics) a training job can spend more time decoding than the GPU spends on the clip, so the workflow
can extract the frames once, the way the authors prepared their data:

    vidbench extract --prepared data/prepared/minikinetics --out data/frames/minikinetics \\
        --shard 0 --shards 8 --short-side 320          # one of 8 independent jobs
    vidbench extract --prepared data/prepared/minikinetics --out data/frames/minikinetics \\
        --index data/prepared/minikinetics/frames --shards 8   # after every shard: the frames index

* Every video of the prepared index (both splits) goes to exactly one shard: the videos sorted by their
  folder name, video k to shard k mod N.
* A video's frames are written as 00001.jpg, 00002.jpg, ... (1-based, as the authors' frame folders) into
  `<out>/<video id>/`, where the video id is the file name without its extension (the Something-V2 id;
  `<youtube_id>_<start>_<end>` for Kinetics). The short side is resized to `--short-side` (frames whose
  short side is already smaller keep their size; 0 keeps every frame's size).
* Resumable: a video is decoded into a temporary folder that is renamed into place once complete, so a
  folder that exists is complete and a rerun (after a crash or a preemption) skips it.
* A shard ends by writing `<out>/.shards/shard-<I>-of-<N>.json` (counts, failed videos and why).
* `--index OUT` writes an index in the format of `vidbench prepare` (classes.txt, train.csv, val.csv,
  meta.json with kind "frames", report.json) whose rows point at the frame folders: the loader then reads
  JPEGs. Its report carries over what `prepare` dropped and adds the videos that failed to extract.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

from vidbench.data.prepare import MIN_FRAMES, _index_csv
from vidbench.data.layouts import SPLITS
from vidbench.errors import InputError
from vidbench.io import write_text

SHARDS_DIR = ".shards"
FRAMES_META = ".frames.json"
JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------------
# What to extract
# --------------------------------------------------------------------------------------------------
def _read_prepared(prepared: Path) -> tuple[dict, dict[str, list[dict]]]:
    meta_path = prepared / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(meta_path, f"cannot read the prepared index: {err.strerror}",
                         expected="the output folder of `vidbench prepare`") from err
    rows = {}
    for split in SPLITS:
        with open(prepared / f"{split}.csv", encoding="utf-8", newline="") as handle:
            rows[split] = list(csv.DictReader(handle))
    return meta, rows


def video_id(rel_path: str) -> str:
    """Folder name of a video's frames: its file name without the extension."""
    return Path(rel_path).stem


def video_jobs(prepared) -> list[tuple[str, str]]:
    """(video id, path relative to the dataset root) of every video of the index, sorted, each once.

    The same file listed in both splits is extracted once; two different files with the same id would
    write into the same folder, so they stop with an error.
    """
    prepared = Path(prepared)
    meta, rows = _read_prepared(prepared)
    if meta.get("kind") != "video":
        raise InputError(prepared / "meta.json", f"the index is of kind {meta.get('kind')!r}: nothing to extract",
                         expected="an index of videos (Something-V2, Kinetics, Mini-Kinetics)")
    jobs: dict[str, str] = {}
    for split in SPLITS:
        for row in rows[split]:
            name = video_id(row["path"])
            if jobs.setdefault(name, row["path"]) != row["path"]:
                raise InputError(prepared / f"{split}.csv", f"two videos would share the frame folder {name!r}: "
                                 f"{jobs[name]} and {row['path']}", expected="distinct video file names")
    return sorted(jobs.items())


def shard_jobs(jobs: list, shard: int, shards: int) -> list:
    """The jobs of shard `shard` (0-based) of `shards`: every shards-th job, starting at `shard`."""
    if shards < 1 or not 0 <= shard < shards:
        raise InputError("--shard/--shards", f"shard {shard} of {shards} does not exist",
                         expected="0 <= shard < shards, shards >= 1")
    return jobs[shard::shards]


def marker_path(out, shard: int, shards: int) -> Path:
    return Path(out) / SHARDS_DIR / f"shard-{shard}-of-{shards}.json"


# --------------------------------------------------------------------------------------------------
# Decoding one video
# --------------------------------------------------------------------------------------------------
def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to `short_side` (never up; even sides for codecs)."""
    short = min(width, height)
    if not short_side or short <= short_side:
        return width, height
    scale = short_side / short
    if width <= height:
        return short_side, max(2, int(round(height * scale / 2)) * 2)
    return max(2, int(round(width * scale / 2)) * 2), short_side


def extract_video(src: Path, dest: Path, short_side: int = 0, quality: int = JPEG_QUALITY) -> int:
    """Decode `src` into `dest`/00001.jpg...; returns the number of frames. `dest` appears only when complete."""
    import av

    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    try:
        with av.open(str(src)) as container:
            if not container.streams.video:
                raise RuntimeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            size = None
            for frame in container.decode(stream):
                if size is None:
                    size = target_size(frame.width, frame.height, short_side)
                image = frame.reformat(width=size[0], height=size[1], format="rgb24",
                                       interpolation="AREA").to_image()
                count += 1
                image.save(tmp / f"{count:05d}.jpg", quality=quality)
        if count == 0:
            raise RuntimeError("no decodable frame")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process finished the same video first: keep theirs
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def _check_frames_meta(out: Path, short_side: int, quality: int) -> None:
    """Frames of one folder must all have been extracted with the same settings."""
    path = out / FRAMES_META
    wanted = {"short_side": int(short_side), "quality": int(quality)}
    if path.exists():
        found = json.loads(path.read_text(encoding="utf-8"))
        if {k: found.get(k) for k in wanted} != wanted:
            raise InputError(path, f"frames in {out} were extracted with {found}, not {wanted}",
                             expected="the same --short-side/--quality, or delete the folder to extract again")
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{FRAMES_META}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)  # shards may start together: the first one's settings win, complete or absent
    except FileExistsError:
        return _check_frames_meta(out, short_side, quality)
    finally:
        tmp.unlink()


def extract_shard(prepared, out, shard: int = 0, shards: int = 1, short_side: int = 0,
                  quality: int = JPEG_QUALITY, quiet: bool = False) -> dict:
    """Extract the videos of one shard into `out`; skips complete ones; writes and returns the shard marker."""
    prepared, out = Path(prepared).absolute(), Path(out).absolute()
    meta, _ = _read_prepared(prepared)
    jobs = shard_jobs(video_jobs(prepared), shard, shards)
    _check_frames_meta(out, short_side, quality)
    root = Path(meta["root"])
    started = time.perf_counter()
    summary = {"shard": shard, "shards": shards, "short_side": short_side, "videos": len(jobs), "extracted": 0,
               "already_done": 0, "frames": 0, "failed": []}
    for k, (name, rel) in enumerate(jobs):
        dest = out / name
        if dest.is_dir():
            summary["already_done"] += 1
            continue
        try:
            summary["frames"] += extract_video(root / rel, dest, short_side, quality)
            summary["extracted"] += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - any decoder error: record it, go on with the others
            summary["failed"].append({"id": name, "path": rel, "reason": f"{type(err).__name__}: {err}"})
        if not quiet and (k + 1) % 500 == 0:
            print(f"shard {shard}/{shards}: {k + 1}/{len(jobs)} videos", file=sys.stderr)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    marker = marker_path(out, shard, shards)
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_text(marker, json.dumps(summary, indent=1) + "\n")
    if not quiet:
        print(f"extract shard {shard} of {shards}: {summary['videos']} videos, {summary['extracted']} extracted, "
              f"{summary['already_done']} already done, {len(summary['failed'])} failed")
        for item in summary["failed"][:3]:
            print(f"  failed: {item['path']} ({item['reason']})")
    return summary


# --------------------------------------------------------------------------------------------------
# The frames index
# --------------------------------------------------------------------------------------------------
def _count_frames(folder: Path) -> int:
    with os.scandir(folder) as it:
        return sum(1 for item in it if item.name.endswith(".jpg"))


def index_frames(prepared, frames, out, shards: int | None = None, quiet: bool = False) -> dict:
    """Write a `prepare`-style index of the frame folders in `frames` for the videos of `prepared`."""
    prepared, frames, out = Path(prepared).absolute(), Path(frames).absolute(), Path(out).absolute()
    meta, rows = _read_prepared(prepared)
    source_report = json.loads((prepared / "report.json").read_text(encoding="utf-8"))
    if shards is not None:
        absent = [str(marker_path(frames, i, shards)) for i in range(shards)
                  if not marker_path(frames, i, shards).exists()]
        if absent:
            raise InputError(absent[0], f"{len(absent)} of {shards} extraction shard(s) have not finished",
                             expected="`vidbench extract --shard I --shards N` run for every shard first")
    failed = {}
    for marker in sorted((frames / SHARDS_DIR).glob("shard-*.json")):
        for item in json.loads(marker.read_text(encoding="utf-8")).get("failed", []):
            failed[item["id"]] = item["reason"]
    classes = (prepared / "classes.txt").read_text(encoding="utf-8").splitlines()
    report = {key: source_report[key] for key in ("format", "root", "num_classes", "annotated",
                                                  "excluded_by_subset", "annotation_problems", "warnings")}
    report.update(ok=False, frames=str(frames), source_index=str(prepared), counts={}, per_class={},
                  dropped={s: dict(source_report["dropped"][s]) for s in SPLITS},
                  **{key: list(source_report[key]) for key in ("missing", "unreadable", "too_short")})
    for split in SPLITS:
        kept, per_class = [], {name: 0 for name in classes}
        for row in rows[split]:
            name = video_id(row["path"])
            folder = frames / name
            n = _count_frames(folder) if folder.is_dir() else 0
            item = {"split": split, "id": row["id"], "path": row["path"]}
            if not folder.is_dir():
                status = "unreadable" if name in failed else "missing"
                item["reason"] = f"extraction failed: {failed[name]}" if name in failed else "frames not extracted"
            elif n < MIN_FRAMES:
                status, item["reason"], item["num_frames"] = "too_short", f"{n} extracted frame(s)", n
            else:
                kept.append((row["id"], name, n, int(row["label"])))
                per_class[classes[int(row["label"])]] += 1
                continue
            report[status].append(item)
            report["dropped"][split][status] += 1
        report["counts"][split] = len(kept)
        report["per_class"][split] = per_class
        write_text(out / f"{split}.csv", _index_csv(kept))
    report["ok"] = True
    write_text(out / "classes.txt", "".join(f"{name}\n" for name in classes))
    write_text(out / "meta.json", json.dumps({
        "format": meta["format"], "root": str(frames), "kind": "frames", "num_classes": len(classes),
        "source": str(prepared)}, indent=1) + "\n")
    write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    if not quiet:
        print(f"index frames of {meta['format']}: " + "; ".join(
            f"{s} {report['counts'][s]} (dropped: {report['dropped'][s]['missing']} missing, "
            f"{report['dropped'][s]['unreadable']} unreadable, {report['dropped'][s]['too_short']} too short)"
            for s in SPLITS))
    return report


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--prepared", required=True, help="index of the videos written by `vidbench prepare`")
    parser.add_argument("--out", required=True, help="frames folder: <out>/<video id>/00001.jpg ...")
    parser.add_argument("--shard", type=int, default=0, help="which shard to extract (0-based)")
    parser.add_argument("--shards", type=int, default=None, help="number of shards (default 1)")
    parser.add_argument("--short-side", type=int, default=0,
                        help="resize frames to this short side (never up; 0 keeps the size)")
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality")
    parser.add_argument("--index", metavar="INDEX_DIR",
                        help="instead of extracting: write the frames index into INDEX_DIR (with --shards: "
                             "check that every shard has finished)")


def run(args) -> int:
    if args.index:
        index_frames(args.prepared, args.out, args.index, shards=args.shards)
    else:
        extract_shard(args.prepared, args.out, args.shard, args.shards or 1, args.short_side, args.quality)
    return 0


__all__ = ["video_jobs", "shard_jobs", "extract_video", "extract_shard", "index_frames", "target_size",
           "marker_path"]
