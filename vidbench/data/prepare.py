"""`vidbench prepare`: turn an official dataset layout into the uniform index used by the loader.

Writes into OUT: classes.txt, train.csv, val.csv (id,path,num_frames,label), meta.json and, last,
report.json. Videos missing on disk, unreadable or too short (< 3 frames) are listed in the report and
left out of the index; bad annotations (missing files, malformed lines, unknown classes) stop with an
InputError after report.json has listed every problem found.
"""
from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vidbench.data import layouts
from vidbench.data.layouts import SPLITS, Annotations, Entry
from vidbench.errors import InputError
from vidbench.io import write_text

MIN_FRAMES = 3
INDEX_FILES = ("classes.txt", "train.csv", "val.csv", "meta.json")


# --------------------------------------------------------------------------------------------------
# Probing one video: (status, num_frames, reason); status in ok | missing | unreadable | too_short
# --------------------------------------------------------------------------------------------------
def _check_jpeg(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # raises on truncated / corrupt data


def probe_frames(folder: Path, full: bool = False) -> tuple[str, int, str]:
    if not folder.is_dir():
        return ("missing", 0, "missing frame folder") if not folder.exists() else ("unreadable", 0, "not a folder")
    names = set()
    empty = []
    with os.scandir(folder) as it:
        for item in it:
            if item.name.lower().endswith(".jpg"):
                names.add(item.name)
                if item.stat().st_size == 0:
                    empty.append(item.name)
    n = len(names)
    if n == 0:
        return "unreadable", 0, "no frames in folder"
    if empty:
        return "unreadable", n, f"empty frame file {sorted(empty)[0]}"
    if n < MIN_FRAMES:
        return "too_short", n, f"{n} frame(s)"
    expected = {layouts.frame_name(i) for i in range(n)}
    if names != expected:
        odd = sorted(names - expected)[:3]
        return "unreadable", n, f"frame names are not 00001.jpg..{n:05d}.jpg (e.g. {', '.join(odd)})"
    to_check = range(n) if full else (0, n - 1)
    for i in to_check:
        try:
            _check_jpeg(folder / layouts.frame_name(i))
        except Exception as err:  # noqa: BLE001 - any decoder error means unreadable
            return "unreadable", n, f"{layouts.frame_name(i)}: {err}"
    return "ok", n, ""


def probe_video(path: Path, full: bool = False) -> tuple[str, int, str]:
    import av

    if not path.exists():
        return "missing", 0, "missing video file"
    try:
        if path.stat().st_size == 0:
            return "unreadable", 0, "empty file"
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "unreadable", 0, "no video stream"
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            if n > 0 and not full:
                next(container.decode(stream))  # cheap readability check: the first frame decodes
            else:
                n = sum(1 for _ in container.decode(stream))
    except StopIteration:
        return "unreadable", 0, "no decodable frame"
    except Exception as err:  # noqa: BLE001 - any demux/decode error means unreadable
        return "unreadable", 0, f"{type(err).__name__}: {err}"
    if n == 0:
        return "unreadable", 0, "no decodable frame"
    if n < MIN_FRAMES:
        return "too_short", n, f"{n} frame(s)"
    return "ok", n, ""


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def _escape_problem(entry: Entry) -> dict:
    file, _, line = entry.where.rpartition(":")
    return {"file": file, "line": int(line) if line.isdigit() else None, "expected": "a path inside the dataset root",
            "message": f"video {entry.id!r} (path {entry.path!r}) is absolute or outside the dataset root"}


def _index_csv(rows: list[tuple[str, str, int, int]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "path", "num_frames", "label"])
    writer.writerows(rows)
    return buf.getvalue()


def _summary(report: dict) -> str:
    parts = []
    for split in SPLITS:
        bad = report["dropped"][split]
        parts.append(f"{split} {report['counts'][split]} (dropped: {bad['missing']} missing, "
                     f"{bad['unreadable']} unreadable, {bad['too_short']} too short)")
    text = f"prepare {report['format']}: {report['num_classes']} classes; " + "; ".join(parts)
    if report["annotation_problems"]:
        text += f"; {len(report['annotation_problems'])} annotation problem(s)"
    if report["warnings"]:
        text += f"; {len(report['warnings'])} warning(s)"
    return text


# --------------------------------------------------------------------------------------------------
# Main entry
# --------------------------------------------------------------------------------------------------
def prepare(fmt: str, root, out, *, subset_classes=None, subset_ids_train=None, subset_ids_val=None,
            workers: int | None = None, full_check: bool = False, quiet: bool = False) -> dict:
    """Index dataset `root` (official layout of `fmt`) into `out`; returns the report (also report.json)."""
    if fmt not in layouts.FORMATS:
        raise InputError("--format", f"unknown format {fmt!r}", expected=" | ".join(layouts.FORMATS))
    root = Path(root).expanduser().absolute()
    out = Path(out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "format": fmt, "root": str(root), "ok": False, "num_classes": 0,
        "counts": {s: 0 for s in SPLITS}, "annotated": {s: 0 for s in SPLITS},
        "excluded_by_subset": {}, "per_class": {s: {} for s in SPLITS},
        "dropped": {s: {"missing": 0, "unreadable": 0, "too_short": 0} for s in SPLITS},
        "missing": [], "unreadable": [], "too_short": [], "annotation_problems": [], "warnings": [],
    }

    def fail(problems: list[dict]):
        report["annotation_problems"] = problems
        for name in INDEX_FILES:  # never leave a stale index next to a failed report
            (out / name).unlink(missing_ok=True)
        write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
        first = problems[0]
        more = f" [{len(problems) - 1} more problem(s) listed in {out / 'report.json'}]" if len(problems) > 1 else ""
        raise InputError(first["file"], first["message"] + more, line=first["line"], expected=first["expected"])

    if not root.is_dir():
        fail([{"file": str(root), "line": None, "message": "dataset root does not exist or is not a folder",
               "expected": f"the root of a {fmt} dataset in its official layout"}])

    subset = {}
    if fmt == "minikinetics":
        subset = {
            "subset_classes": Path(subset_classes) if subset_classes else root / layouts.MINI_CLASSES,
            "subset_ids": {"train": Path(subset_ids_train) if subset_ids_train else root / layouts.MINI_IDS["train"],
                           "val": Path(subset_ids_val) if subset_ids_val else root / layouts.MINI_IDS["val"]},
        }
    ann: Annotations = layouts.parse(fmt, root, **subset)
    report["warnings"] = ann.warnings
    report["excluded_by_subset"] = ann.excluded
    if ann.problems:
        fail(ann.problems)
    if fmt in ("kinetics", "minikinetics"):
        for split in SPLITS:
            layouts.resolve_kinetics_paths(root, ann.entries[split])
    escaping = [_escape_problem(e) for s in SPLITS for e in ann.entries[s]
                if os.path.isabs(e.id) or not layouts.inside_root(e.path)]
    if escaping:
        fail(escaping)

    probe = probe_frames if ann.kind == "frames" else probe_video
    workers = workers or min(4, os.cpu_count() or 1)
    all_entries: list[Entry] = [e for s in SPLITS for e in ann.entries[s]]

    def run_probe(entry: Entry):
        return probe(root / entry.path, full_check)

    if workers > 1 and len(all_entries) > 8:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(run_probe, all_entries, chunksize=16))
    else:
        results = [run_probe(e) for e in all_entries]

    rows = {s: [] for s in SPLITS}
    per_class = {s: {name: 0 for name in ann.classes} for s in SPLITS}
    for entry, (status, n, reason) in zip(all_entries, results):
        if status == "ok":
            rows[entry.split].append((entry.id, entry.path, n, entry.label))
            per_class[entry.split][ann.classes[entry.label]] += 1
            continue
        item = {"split": entry.split, "id": entry.id, "path": entry.path, "reason": reason}
        if status == "too_short":
            item["num_frames"] = n
        report[status].append(item)
        report["dropped"][entry.split][status] += 1

    for split in SPLITS:
        report["annotated"][split] = len(ann.entries[split])
        report["counts"][split] = len(rows[split])
    report["per_class"] = per_class
    report["num_classes"] = len(ann.classes)
    empty = [split for split in SPLITS if not rows[split]]
    if empty:
        fail([{"file": str(root), "line": None, "expected": "at least one readable video in every split",
               "message": f"no usable {split} video: {report['annotated'][split]} annotated, "
                          + ", ".join(f"{n} {why}" for why, n in report["dropped"][split].items())} for split in empty])
    report["ok"] = True

    write_text(out / "classes.txt", "".join(f"{name}\n" for name in ann.classes))
    for split in SPLITS:
        write_text(out / f"{split}.csv", _index_csv(rows[split]))
    write_text(out / "meta.json", json.dumps({"format": fmt, "root": str(root), "kind": ann.kind,
                                                 "num_classes": len(ann.classes)}, indent=1) + "\n")
    write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    if not quiet:
        print(_summary(report))
        for key in ("missing", "unreadable", "too_short"):
            for item in report[key][:3]:
                print(f"  {key}: {item['path']} ({item['reason']})")
            if len(report[key]) > 3:
                print(f"  ... {len(report[key]) - 3} more {key} in {out / 'report.json'}")
    return report


def add_arguments(parser) -> None:
    parser.add_argument("--format", required=True, choices=layouts.FORMATS, help="official layout of ROOT")
    parser.add_argument("--root", required=True, help="dataset root in its official layout")
    parser.add_argument("--out", required=True, help="folder for classes.txt, train.csv, val.csv, meta.json, report.json")
    parser.add_argument("--subset-classes", help=f"minikinetics: class list (default ROOT/{layouts.MINI_CLASSES})")
    parser.add_argument("--subset-ids-train", help=f"minikinetics: train ids (default ROOT/{layouts.MINI_IDS['train']})")
    parser.add_argument("--subset-ids-val", help=f"minikinetics: val ids (default ROOT/{layouts.MINI_IDS['val']})")
    parser.add_argument("--workers", type=int, default=None, help="threads for probing videos (default min(4, cores))")
    parser.add_argument("--full-check", action="store_true",
                        help="decode every frame (default: first/last JPEG, first video frame)")


def run(args) -> int:
    prepare(args.format, args.root, args.out, subset_classes=args.subset_classes,
            subset_ids_train=args.subset_ids_train, subset_ids_val=args.subset_ids_val,
            workers=args.workers, full_check=args.full_check)
    return 0
