"""The official on-disk layouts of the supported datasets: file names and annotation parsers.

Shared by `vidbench synth` (which writes these layouts) and `vidbench prepare` (which reads them),
so that synthetic and real data go through exactly the same loading code.

Every parser returns an `Annotations` object and never raises on bad content: problems are collected
(`problems` are fatal, `warnings` are not) so that `prepare` can report all of them at once.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val")

# --- Something-Something V1 -------------------------------------------------------------------
STHV1_VIDEO_DIR = "20bn-something-something-v1"
STHV1_LABELS = "something-something-v1-labels.csv"
STHV1_SPLITS = {"train": "something-something-v1-train.csv", "val": "something-something-v1-validation.csv"}
STHV1_TEST = "something-something-v1-test.csv"

# --- Something-Something V2 -------------------------------------------------------------------
STHV2_VIDEO_DIR = "20bn-something-something-v2"
STHV2_LABELS = "something-something-v2-labels.json"
STHV2_SPLITS = {"train": "something-something-v2-train.json", "val": "something-something-v2-validation.json"}
STHV2_TEST = "something-something-v2-test.json"

# --- Jester -------------------------------------------------------------------------------------
JESTER_VIDEO_DIR = "20bn-jester-v1"
JESTER_LABELS = "jester-v1-labels.csv"
JESTER_SPLITS = {"train": "jester-v1-train.csv", "val": "jester-v1-validation.csv"}
JESTER_TEST = "jester-v1-test.csv"

# --- Kinetics / Mini-Kinetics -------------------------------------------------------------------
KINETICS_SPLITS = {"train": "kinetics_train.csv", "val": "kinetics_val.csv"}
# The CVDF mirror of Kinetics-400 unpacks to annotations/<split>.csv and flat <split>/<stem>.mp4 folders
KINETICS_CVDF_SPLITS = {"train": "annotations/train.csv", "val": "annotations/val.csv"}
KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_EXTS = (".mp4", ".mkv", ".webm", ".avi")
MINI_CLASSES = "minikinetics_classes.txt"
MINI_IDS = {"train": "minikinetics_train_ids.txt", "val": "minikinetics_val_ids.txt"}

FORMATS = ("sthv1", "sthv2", "jester", "kinetics", "minikinetics")
KIND = {"sthv1": "frames", "jester": "frames", "sthv2": "video", "kinetics": "video", "minikinetics": "video"}


def frame_name(index0: int) -> str:
    """File name of the frame with 0-based index `index0` inside a frame folder (1-based names)."""
    return f"{index0 + 1:05d}.jpg"


def kinetics_stem(youtube_id: str, start: int, end: int) -> str:
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def inside_root(relative: str) -> bool:
    """Whether an annotation's path stays inside the dataset root: not absolute and never climbing above it
    with '..' (judged on the text, so a root or subfolder that is a symlink, as on clusters, still works)."""
    path = os.path.normpath(relative)
    return not os.path.isabs(path) and path != ".." and not path.startswith(".." + os.sep)


def sthv2_class(template: str) -> str:
    """The class of a Something-V2 template: the template with '[' and ']' removed."""
    return template.replace("[", "").replace("]", "")


@dataclass
class Entry:
    split: str
    id: str
    path: str  # relative to the dataset root
    label: int
    where: str  # "file:line" of the annotation, for messages


@dataclass
class Annotations:
    fmt: str
    root: Path
    classes: list[str] = field(default_factory=list)
    entries: dict[str, list[Entry]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    problems: list[dict] = field(default_factory=list)  # fatal
    warnings: list[dict] = field(default_factory=list)  # not fatal
    excluded: dict[str, int] = field(default_factory=dict)  # e.g. filtered out by a subset

    @property
    def kind(self) -> str:
        return KIND[self.fmt]

    def problem(self, path, message, line=None, expected=None, fatal=True, **extra):
        item = {"file": str(path), "line": line, "message": message, "expected": expected, **extra}
        (self.problems if fatal else self.warnings).append(item)


# --------------------------------------------------------------------------------------------------
# Reading helpers (UTF-8 with or without BOM, any line ending)
# --------------------------------------------------------------------------------------------------
def _read_text(ann: Annotations, path: Path, what: str) -> str | None:
    if not path.is_file():
        ann.problem(path, f"missing {what}", expected=f"the official file {path.name} in the dataset root")
        return None
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        ann.problem(path, f"not valid UTF-8 ({err.reason} at byte {err.start})", expected="a UTF-8 text file")
        return None
    except OSError as err:
        ann.problem(path, f"cannot read {what}: {err.strerror}")
        return None


def _lines(text: str):
    """(1-based line number, stripped line) for every non-blank line; handles CRLF and lone CR."""
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


def _read_class_list(ann: Annotations, path: Path, what: str) -> list[str] | None:
    text = _read_text(ann, path, what)
    if text is None:
        return None
    classes, seen = [], {}
    for number, name in _lines(text):
        if name in seen:
            ann.problem(path, f"duplicate class {name!r} (first on line {seen[name]})", line=number,
                        expected="each class name once")
            continue
        seen[name] = number
        classes.append(name)
    if not classes:
        ann.problem(path, f"empty {what}", expected="one class name a line")
    return classes


# --------------------------------------------------------------------------------------------------
# Something-Something V1 and Jester: "<id>;<class name>" lines
# --------------------------------------------------------------------------------------------------
def _parse_semicolon(ann: Annotations, video_dir: str, labels: str, splits: dict[str, str]) -> Annotations:
    classes = _read_class_list(ann, ann.root / labels, "label file")
    if classes is not None:
        ann.classes = classes
    index = {name: i for i, name in enumerate(ann.classes)}
    for split, name in splits.items():
        path = ann.root / name
        text = _read_text(ann, path, f"{split} annotation file")
        if text is None:
            continue
        seen: dict[str, int] = {}
        for number, line in _lines(text):
            fields = line.split(";")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                ann.problem(path, f"malformed line {line!r} ({len(fields)} field(s))", line=number,
                            expected="'<id>;<class name>'")
                continue
            vid, cls = fields[0].strip(), fields[1].strip()
            if classes is not None and cls not in index:
                ann.problem(path, f"unknown class {cls!r}", line=number, expected=f"a class listed in {labels}")
                continue
            if vid in seen:
                ann.problem(path, f"duplicate id {vid!r} (first on line {seen[vid]}); kept the first", line=number,
                            fatal=False)
                continue
            seen[vid] = number
            if classes is not None:
                ann.entries[split].append(Entry(split, vid, f"{video_dir}/{vid}", index[cls], f"{path}:{number}"))
    return ann


def parse_sthv1(root: Path) -> Annotations:
    return _parse_semicolon(Annotations("sthv1", root), STHV1_VIDEO_DIR, STHV1_LABELS, STHV1_SPLITS)


def parse_jester(root: Path) -> Annotations:
    return _parse_semicolon(Annotations("jester", root), JESTER_VIDEO_DIR, JESTER_LABELS, JESTER_SPLITS)


# --------------------------------------------------------------------------------------------------
# Something-Something V2: JSON
# --------------------------------------------------------------------------------------------------
def _read_json(ann: Annotations, path: Path, what: str):
    text = _read_text(ann, path, what)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        ann.problem(path, f"bad JSON: {err.msg} (column {err.colno})", line=err.lineno, expected="valid JSON")
        return None


def parse_sthv2(root: Path) -> Annotations:
    ann = Annotations("sthv2", root)
    labels_path = root / STHV2_LABELS
    labels = _read_json(ann, labels_path, "label file")
    index: dict[str, int] | None = None
    if labels is not None:
        if not isinstance(labels, dict):
            ann.problem(labels_path, "not a JSON object", expected='{"<class>": "<index>", ...}')
        else:
            index, by_number = {}, {}
            for name, value in labels.items():
                try:
                    number = int(value)
                except (TypeError, ValueError):
                    ann.problem(labels_path, f"class {name!r} has a non-integer index {value!r}",
                                expected='"<index>" as a string of digits')
                    continue
                if number in by_number:
                    ann.problem(labels_path, f"index {number} used by {by_number[number]!r} and {name!r}",
                                expected="distinct indices")
                    continue
                by_number[number] = name
                index[name] = number
            if by_number and sorted(by_number) != list(range(len(by_number))):
                ann.problem(labels_path, "class indices are not 0..N-1", expected="indices 0..N-1")
            # Class list in index order; indices are re-numbered densely if the file is broken.
            ann.classes = [by_number[k] for k in sorted(by_number)]
            index = {name: i for i, name in enumerate(ann.classes)}
    for split, name in STHV2_SPLITS.items():
        path = root / name
        data = _read_json(ann, path, f"{split} annotation file")
        if data is None:
            continue
        if not isinstance(data, list):
            ann.problem(path, "not a JSON list", expected='[{"id", "label", "template", "placeholders"}, ...]')
            continue
        seen: dict[str, int] = {}
        for position, item in enumerate(data):
            where = f"entry {position}"
            if not isinstance(item, dict) or "id" not in item or "template" not in item:
                ann.problem(path, f"{where}: malformed entry {str(item)[:80]!r}",
                            expected='an object with "id" and "template"', entry=position)
                continue
            vid = str(item["id"]).strip()
            where = f"entry {position} (id {vid})"
            template = item["template"]
            if not isinstance(template, str) or not vid:
                ann.problem(path, f"{where}: empty id or non-string template", expected="strings", entry=position)
                continue
            cls = sthv2_class(template)
            if index is not None and cls not in index:
                ann.problem(path, f"{where}: unknown class {cls!r} (template {template!r})",
                            expected=f"a class listed in {STHV2_LABELS}", entry=position)
                continue
            if vid in seen:
                ann.problem(path, f"{where}: duplicate id (first at entry {seen[vid]}); kept the first",
                            fatal=False, entry=position)
                continue
            seen[vid] = position
            if index is not None:
                ann.entries[split].append(Entry(split, vid, f"{STHV2_VIDEO_DIR}/{vid}.webm", index[cls],
                                                f"{path}:{where}"))
    return ann


# --------------------------------------------------------------------------------------------------
# Kinetics (full) and Mini-Kinetics (subset by class list + per-split id lists)
# --------------------------------------------------------------------------------------------------
_STEM_SUFFIX = re.compile(r"_\d{6}_\d{6}$")


def kinetics_csv(root: Path, split: str) -> Path:
    """kinetics_<split>.csv, or annotations/<split>.csv (the CVDF mirror's name) when only that exists."""
    path = root / KINETICS_SPLITS[split]
    cvdf = root / KINETICS_CVDF_SPLITS[split]
    return cvdf if not path.exists() and cvdf.is_file() else path


def _read_kinetics_csv(ann: Annotations, split: str) -> list[tuple[int, str, str, int, int]] | None:
    """Rows (line, label, youtube_id, start, end) of kinetics_<split>.csv."""
    path = kinetics_csv(ann.root, split)
    text = _read_text(ann, path, f"{split} annotation file")
    if text is None:
        return None
    lines = text.splitlines()
    reader = csv.reader(lines)
    rows = []
    header = None
    for number, fields in enumerate(reader, start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        fields = [f.strip() for f in fields]
        if header is None:
            header = fields
            missing = [c for c in KINETICS_HEADER[:4] if c not in header]
            if missing:
                ann.problem(path, f"header lacks column(s) {', '.join(missing)}", line=number,
                            expected="header " + ",".join(KINETICS_HEADER))
                return None
            col = {name: header.index(name) for name in KINETICS_HEADER[:4]}
            continue
        if len(fields) != len(header):
            ann.problem(path, f"malformed line ({len(fields)} fields, header has {len(header)})", line=number,
                        expected=",".join(header))
            continue
        label, ytid = fields[col["label"]], fields[col["youtube_id"]]
        try:
            start, end = int(float(fields[col["time_start"]])), int(float(fields[col["time_end"]]))
        except ValueError:
            ann.problem(path, "time_start/time_end are not numbers", line=number, expected="integer seconds")
            continue
        if not label or not ytid:
            ann.problem(path, "empty label or youtube_id", line=number, expected="non-empty fields")
            continue
        rows.append((number, label, ytid, start, end))
    if header is None:
        ann.problem(path, "empty annotation file", expected="header " + ",".join(KINETICS_HEADER))
    return rows


def _read_id_list(ann: Annotations, path: Path, what: str) -> set[str] | None:
    text = _read_text(ann, path, what)
    if text is None:
        return None
    ids = set()
    for _, line in _lines(text):
        # "<id>", "<id>_<start>_<end>", a path such as "train/<class name>/<id>_<start>_<end>.mp4" (class
        # names have spaces), or such a field followed by others ("<path> <num_frames> <label>", "<id>,...")
        first = re.sub(r"(\s+\d+)+$", "", line.split(",")[0].strip())
        name = first.rstrip("/").rsplit("/", 1)[-1]
        stem = name.rsplit(".", 1)[0] if Path(name).suffix.lower() in KINETICS_EXTS else name
        ids.add(_STEM_SUFFIX.sub("", stem))
    return ids


def parse_kinetics(root: Path, *, subset_classes: Path | None = None, subset_ids: dict[str, Path] | None = None,
                   fmt: str = "kinetics") -> Annotations:
    """Kinetics layout. With `subset_classes` and `subset_ids`, keep only the listed classes and ids."""
    ann = Annotations(fmt, root)
    subset = subset_classes is not None
    keep_classes = _read_class_list(ann, subset_classes, "subset class list") if subset else None
    keep_ids = {s: _read_id_list(ann, subset_ids[s], f"{s} subset id list") for s in SPLITS} if subset else None
    rows = {split: _read_kinetics_csv(ann, split) for split in SPLITS}

    if subset:
        ann.classes = list(keep_classes or [])
        all_labels = {r[1] for split in SPLITS for r in (rows[split] or [])}
        if rows["train"] is not None and rows["val"] is not None:
            for name in ann.classes:
                if name not in all_labels:
                    ann.problem(subset_classes, f"subset class {name!r} does not occur in the Kinetics annotations",
                                expected="class names spelled as in kinetics_<split>.csv")
    elif rows["train"] is not None:
        ann.classes = sorted({r[1] for r in rows["train"]})
    index = {name: i for i, name in enumerate(ann.classes)}

    for split in SPLITS:
        if rows[split] is None:
            continue
        path = kinetics_csv(root, split)
        seen: dict[str, int] = {}
        excluded = 0
        for number, label, ytid, start, end in rows[split]:
            if subset:
                ids = keep_ids[split]
                if ids is None or ytid not in ids:
                    excluded += 1
                    continue
                if label not in index:
                    excluded += 1
                    ann.problem(path, f"id {ytid} is in the subset id list but its class {label!r} is not a subset "
                                f"class; excluded", line=number, fatal=False)
                    continue
            elif label not in index:
                ann.problem(path, f"unknown class {label!r}", line=number,
                            expected=f"a class that occurs in {KINETICS_SPLITS['train']}")
                continue
            stem = kinetics_stem(ytid, start, end)
            if stem in seen:
                ann.problem(path, f"duplicate video {stem} (first on line {seen[stem]}); kept the first",
                            line=number, fatal=False)
                continue
            seen[stem] = number
            ann.entries[split].append(Entry(split, ytid, f"{split}/{label}/{stem}.mp4", index[label], f"{path}:{number}"))
        if subset:
            ann.excluded[split] = excluded
            found = {e.id for e in ann.entries[split]}
            lost = sorted((keep_ids[split] or set()) - found - {r[2] for r in rows[split]})
            if lost:
                ann.problem(subset_ids[split], f"{len(lost)} subset id(s) have no row in {path.name} "
                            f"(first: {', '.join(lost[:5])})", fatal=False)
    return ann


def resolve_kinetics_paths(root: Path, entries: list[Entry]) -> None:
    """Real Kinetics downloads vary: the class folder may use '_' for ' ', the extension may differ, or
    the videos of a split may lie in one flat folder (the CVDF mirror: <split>/<stem>.mp4).

    Rewrites `entry.path` to the file that exists (listing each folder once); unchanged if none.
    """
    listings: dict[Path, dict[str, str] | None] = {}

    def listing(folder: Path):
        if folder not in listings:
            try:
                listings[folder] = {Path(n).stem: n for n in sorted(p.name for p in folder.iterdir())
                                    if Path(n).suffix.lower() in KINETICS_EXTS}
            except OSError:
                listings[folder] = None
        return listings[folder]

    for entry in entries:
        split, label, filename = entry.path.split("/", 2)
        stem = Path(filename).stem
        for folder_name in dict.fromkeys((label, label.replace(" ", "_"))):
            files = listing(root / split / folder_name)
            if files and stem in files:
                entry.path = f"{split}/{folder_name}/{files[stem]}"
                break
        else:
            files = listing(root / split)
            if files and stem in files:
                entry.path = f"{split}/{files[stem]}"


def parse(fmt: str, root: Path, **subset) -> Annotations:
    if fmt == "sthv1":
        return parse_sthv1(root)
    if fmt == "sthv2":
        return parse_sthv2(root)
    if fmt == "jester":
        return parse_jester(root)
    if fmt == "kinetics":
        return parse_kinetics(root)
    if fmt == "minikinetics":
        return parse_kinetics(root, fmt="minikinetics", **subset)
    raise ValueError(f"unknown format {fmt!r}")
