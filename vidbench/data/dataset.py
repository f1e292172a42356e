"""Clip loader over a prepared index (see `vidbench.data.prepare`): TSN/TSM segment sampling + augmentation.

`ClipDataset[i]` -> (clip float32 [T, 3, S, S], label) or None when the sample cannot be read (a warning
is logged once per sample, the path and reason are kept in `ClipDataset.unreadable`); `collate_skip` drops
unreadable samples and counts them (`Skipped`, an int that also carries their paths).

`build_loader` leaves the workers little more than decoding: each one crops (and flips) the frames it
decoded and packs the uint8 crops, at their own sizes, into a shared-memory slot that is reused
(`BatchRing`), so a batch crosses to the main process as a few numbers. The per-pixel work, the resize
to S x S and the normalisation, happens once per batch where the batch goes: on the training device
when one is given (after a pinned, non-blocking copy of the packed bytes), else on the CPU.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from vidbench import io as vio
from vidbench.errors import OutputError
from vidbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, normalize, resize

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Index helpers
# --------------------------------------------------------------------------------------------------
def class_names(prepared_dir) -> list[str]:
    text = (Path(prepared_dir) / "classes.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def num_classes(prepared_dir) -> int:
    return len(class_names(prepared_dir))


def read_index(prepared_dir, split: str) -> list[tuple[str, str, int, int]]:
    """Rows (id, path, num_frames, label) of <prepared_dir>/<split>.csv."""
    with open(Path(prepared_dir) / f"{split}.csv", encoding="utf-8", newline="") as handle:
        return [(r["id"], r["path"], int(r["num_frames"]), int(r["label"])) for r in csv.DictReader(handle)]


def sample_indices(num_frames: int, num_segments: int, train: bool, generator: torch.Generator | None = None
                   ) -> np.ndarray:
    """0-based frame indices of the T = num_segments segments (TSN/TSM sampling).

    The video is cut into T equal segments [i*n/T, (i+1)*n/T); training takes one uniformly random
    position in each, evaluation the centre of each: floor((i + 0.5) * n / T). Videos shorter than T
    repeat frames in order (each segment maps onto the frame it overlaps).
    """
    n, t = int(num_frames), int(num_segments)
    if n <= 0 or t <= 0:
        raise ValueError(f"need num_frames > 0 and num_segments > 0, got {n}, {t}")
    if train:
        u = torch.rand(t, generator=generator, dtype=torch.float64).numpy()
    else:
        u = np.full(t, 0.5)
    idx = np.floor((np.arange(t) + u) * n / t).astype(np.int64)
    return np.minimum(idx, n - 1)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------
def _load_jpegs(folder: Path, indices) -> dict[int, np.ndarray]:
    from PIL import Image

    out = {}
    for k in sorted(set(int(i) for i in indices)):
        with Image.open(folder / f"{k + 1:05d}.jpg") as img:
            out[k] = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # RGB: no extra copy
    return out


_REFORMATTERS: dict = {}


def _reformatter():
    """One colour-conversion context per process (creating one per frame dominates small-video decoding).

    Keyed by process id: a forked DataLoader worker makes its own and never frees the parent's copy.
    """
    import os

    from av.video.reformatter import VideoReformatter

    pid = os.getpid()
    if pid not in _REFORMATTERS:
        _REFORMATTERS[pid] = VideoReformatter()
    return _REFORMATTERS[pid]


def _decode_video(path: Path, indices=None) -> dict[int, np.ndarray]:
    """Decode frames of `path` (all when indices is None); stops after the last needed frame."""
    import av

    need = None if indices is None else set(int(i) for i in indices)
    last = None if need is None else max(need)
    out = {}
    reformatter = _reformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # One decoding thread: the loader's worker processes already use every core, and codec threads
        # on top of them only compete (and add frame-threading latency to each short clip).
        stream.thread_count = 1
        for k, frame in enumerate(container.decode(stream)):
            if need is None or k in need:
                out[k] = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()  # no sws thread pool
            if last is not None and k >= last:
                break
    return out


@dataclass(frozen=True)
class Unreadable:
    """Stands for a sample that could not be read, in a batch on its way to `collate_skip`."""

    path: str
    reason: str


class Skipped(int):
    """How many samples of a batch were unreadable (an int), with their (path, reason) in `items`."""

    def __new__(cls, items=()):
        obj = super().__new__(cls, len(items))
        obj.items = tuple(items)
        return obj

    def __reduce__(self):  # crosses process boundaries with its items
        return Skipped, (self.items,)


class DecodedStore:
    """Every video's decoded frames as one .npy file under `folder`, written once (atomically) by the first
    process that decodes it and read by every later one: the runs of a dataset share one decoding. A file is
    named after the video's path, size and modification time, so a regenerated video is decoded anew."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def file(self, source: Path) -> Path:
        stat = source.stat()
        name = hashlib.sha1(str(source).encode()).hexdigest()[:20]
        return self.folder / f"{name}-{stat.st_size}-{stat.st_mtime_ns}.npy"

    def get(self, source: Path) -> np.ndarray | None:
        try:
            return np.load(self.file(source), allow_pickle=False)
        except (OSError, ValueError, EOFError):  # not written yet (or unreadable: decoded and written again)
            return None

    def put(self, source: Path, frames: np.ndarray) -> None:
        try:
            vio.write_bytes(self.file(source), lambda handle: np.save(handle, frames, allow_pickle=False), sync=False)
        except OutputError as err:  # a full or read-only disk costs only the sharing
            log.warning("not sharing decoded frames: %s", err)


class ClipDataset(Dataset):
    """Clips of `num_segments` frames from a prepared split ('train' or 'val').

    `finish=False` returns the transform's cuts instead of clips: the T uint8 [h, w, 3] frames before the
    resize and normalisation (what `build_loader`'s workers pack; the batches are finished where they go).
    """

    def __init__(self, prepared_dir, split: str, *, num_segments: int, train: bool, input_size: int = 224,
                 scale_size: int = 256, flip: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD, cache: bool = False,
                 store: DecodedStore | None = None, finish: bool = True):
        self.prepared_dir = Path(prepared_dir)
        meta = json.loads((self.prepared_dir / "meta.json").read_text(encoding="utf-8"))
        self.root = Path(meta["root"])
        self.kind = meta["kind"]
        self.split = split
        self.samples = read_index(self.prepared_dir, split)
        self.num_segments = int(num_segments)
        self.train = bool(train)
        self.transform = ClipTransform(train=train, input_size=input_size, scale_size=scale_size,
                                       flip=flip and train, mean=mean, std=std)
        self.finish = bool(finish)
        self.cache: dict[int, np.ndarray] | None = {} if cache else None
        self.store = store if cache else None
        self.unreadable: dict[str, str] = {}  # path -> reason, for samples read in this process
        self._warned: set[int] = set()
        self._generator: torch.Generator | None = None

    def seed(self, seed: int) -> None:
        """Use a private random stream for the frames and augmentation of samples read by index."""
        self._generator = torch.Generator().manual_seed(int(seed) % (2**63))

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> list[int]:
        return [s[3] for s in self.samples]

    def path(self, i: int) -> Path:
        return self.root / self.samples[i][1]

    def _frames(self, i: int, generator: torch.Generator | None) -> list[np.ndarray]:
        """The T sampled uint8 [H, W, 3] frames of sample i (the transform stacks what it keeps of them)."""
        _, rel, n, _ = self.samples[i]
        path = self.root / rel
        if self.cache is not None:
            frames = self.cache.get(i)
            if frames is None and self.store is not None:
                frames = self.store.get(path)
            if frames is None:
                frames = self._decode_all(path, n)
                if self.store is not None:
                    self.store.put(path, frames)
            self.cache[i] = frames
            idx = sample_indices(len(frames), self.num_segments, self.train, generator)
            return [frames[k] for k in idx]
        idx = sample_indices(n, self.num_segments, self.train, generator)
        got = _load_jpegs(path, idx) if self.kind == "frames" else _decode_video(path, idx)
        if not got:
            raise RuntimeError("no decodable frame")
        if len(got) < len(set(idx.tolist())):  # video shorter than indexed: use the last decoded frame
            last = max(got)
            idx = np.minimum(idx, last)
            got = {k: got.get(k, got[last]) for k in idx.tolist()}
        return [got[int(k)] for k in idx]

    def _decode_all(self, path: Path, n: int) -> np.ndarray:
        got = _load_jpegs(path, range(n)) if self.kind == "frames" else _decode_video(path)
        if not got:
            raise RuntimeError("no decodable frame")
        return np.stack([got[k] for k in sorted(got)])

    def _sample(self, i: int, seed: int | None = None):
        """(clip, label), or an `Unreadable` naming the file and the error; the frames and augmentation are
        drawn from `seed` when given, else from the dataset's own stream (`seed()`)."""
        generator = self._generator if seed is None else torch.Generator().manual_seed(seed)
        try:
            frames = self._frames(i, generator)
            sizes = {frame.shape for frame in frames}
            if len(sizes) > 1:
                raise ValueError(f"its frames differ in size: {sorted(sizes)}")
        except Exception as err:  # noqa: BLE001 - unreadable sample: skip it, say so once
            reason = f"{type(err).__name__}: {err}"
            self.unreadable[str(self.path(i))] = reason
            if i not in self._warned:
                self._warned.add(i)
                log.warning("skipping unreadable sample %s (%s)", self.path(i), reason)
            return Unreadable(str(self.path(i)), reason)
        clip = self.transform(frames, generator) if self.finish else self.transform.cut(frames, generator)
        return clip, self.samples[i][3]

    def __getitem__(self, i: int):
        sample = self._sample(i)
        return None if isinstance(sample, Unreadable) else sample

    def __getitems__(self, items) -> list:
        """A batch for the DataLoader from (index, seed) pairs (`SeededSampler`) or indices; unreadable
        samples stay in it as `Unreadable` (path and reason)."""
        return [self._sample(*item) if isinstance(item, tuple) else self._sample(int(item)) for item in items]


class SeededSampler(Sampler):
    """(index, seed) pairs of an epoch: the order (shuffled when `shuffle`) and one seed per sample, all
    drawn from `generator` when the epoch starts.

    A sample's frames and augmentation then depend only on the generator's state at that moment: not
    on which worker reads it, on how many workers there are, or on where training was resumed.

    Split over `ranks` processes (multi-process training, `vidbench.distributed`), every rank draws the
    same epoch and takes the `rank`-th of `ranks` near-equal parts of each global batch of `batch`
    samples (a last global batch with fewer samples than ranks is left out), so its loader's batches of
    `batch // ranks` are its parts of the global batches, in step with the other ranks'.
    """

    def __init__(self, size: int, shuffle: bool, generator: torch.Generator, rank: int = 0, ranks: int = 1,
                 batch: int = 1):
        self.size, self.shuffle, self.generator = int(size), bool(shuffle), generator
        self.rank, self.ranks, self.batch = rank, ranks, batch
        self.start = 0  # samples of the next epoch to leave out from the front (resuming mid-epoch)

    def __len__(self) -> int:
        return len(self._positions())

    def _positions(self) -> torch.Tensor:
        """The epoch's positions this rank takes."""
        every = torch.arange(self.size)
        if self.ranks == 1:
            return every
        parts = [batch.tensor_split(self.ranks)[self.rank] for batch in every.split(self.batch)
                 if len(batch) >= self.ranks]
        return torch.cat(parts) if parts else every[:0]

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        seeds = torch.randint(2**62, (self.size,), generator=self.generator)
        start, self.start = self.start, 0
        mine = self._positions()[start:]
        return zip(order[mine].tolist(), seeds[mine].tolist())


def _split(batch) -> tuple[list, Skipped]:
    """(readable (clip, label) samples, `Skipped` for the rest)."""
    kept = [b for b in batch if b is not None and not isinstance(b, Unreadable)]
    skipped = Skipped([(b.path, b.reason) if isinstance(b, Unreadable) else (None, "unreadable")
                       for b in batch if b is None or isinstance(b, Unreadable)])
    return kept, skipped


def collate_skip(batch):
    """(clips [B, T, 3, H, W], labels [B] int64, skipped) of `ClipDataset` samples for a plain DataLoader;
    None and `Unreadable` samples are dropped.

    `skipped` is a `Skipped` (an int: how many were dropped; `.items`: their (path, reason) when known).
    When every sample of the batch was dropped, clips and labels are empty tensors (B = 0).
    """
    kept, skipped = _split(batch)
    clips = default_collate([clip for clip, _ in kept]) if kept else torch.empty(0)
    return clips, torch.tensor([label for _, label in kept], dtype=torch.long), skipped


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % (2**32)  # the loader's base seed + worker_id
    random.seed(seed)
    np.random.seed(seed)
    # Slurm signals every process of a job: the trainer stops cleanly (vidbench.rundir.StopRequest) and
    # shuts its workers down itself; a worker killed first would make the trainer's next step fail
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


SHARED_MEMORY = Path("/dev/shm")


def _check_shared_memory(nbytes: int) -> None:
    """Stop with a clear message where the slots would not fit: on a full tmpfs the workers would
    otherwise die of SIGBUS at the first batch that touches the missing pages."""
    if not SHARED_MEMORY.is_dir():  # not Linux: the platform places shared memory elsewhere
        return
    free = shutil.disk_usage(SHARED_MEMORY).free
    if nbytes > free:
        raise RuntimeError(f"the loader needs {nbytes / 2**30:.2f} GiB of shared memory for its batch slots and "
                           f"{SHARED_MEMORY} has {free / 2**30:.2f} GiB free: lower data.workers or the batch "
                           f"size, or give the machine (a container: --shm-size) more shared memory")


@dataclass(frozen=True)
class Slot:
    """The batch packed in slot `depth` of worker `worker`'s part of a `BatchRing`."""

    worker: int
    depth: int


@dataclass(frozen=True)
class Packed:
    """A batch of uint8 clips of T frames packed one after the other in `buffer`: clip k is a
    [T, h_k, w_k, 3] block, (h_k, w_k) = shapes[k] (the cuts of `ClipTransform`, not yet resized)."""

    buffer: torch.Tensor
    shapes: tuple[tuple[int, int], ...]
    frames: int

    @property
    def nbytes(self) -> int:
        return sum(self.frames * h * w * 3 for h, w in self.shapes)

    def clips(self, buffer: torch.Tensor | None = None):
        """[T, h, w, 3] views of the clips, in `buffer` (a copy of the packed bytes) or in the batch's own."""
        buffer = self.buffer if buffer is None else buffer
        offset = 0
        for h, w in self.shapes:
            size = self.frames * h * w * 3
            yield buffer[offset:offset + size].view(self.frames, h, w, 3)
            offset += size


def _nbytes(cut: list[np.ndarray]) -> int:
    return len(cut) * cut[0].size


class BatchRing:
    """Shared-memory slots that the loader's workers pack batches into and the main process reads in place.

    The collate function of `build_loader`: a batch crosses to the main process as a `Slot` (two ints),
    the clips' shapes and the labels, instead of a new shared-memory segment; allocating, faulting in and
    passing one segment per batch cost the workers a quarter of their time. Each worker owns `depth`
    slots and takes them in turn; a slot is busy from its packing until the main process calls `release`.
    A batch whose slot is still busy (an epoch left unfinished) travels the ordinary way, as a tensor.

    A slot has room for `batch_size` clips of T x `room` x `room` pixels. The cuts are packed at their own
    size (crops are mostly smaller than S x S, and the resize is per-pixel work better done on the
    training device); a cut that would leave too little room for the rest at S x S (frames of high
    resolution) is resized to S x S in the worker.
    """

    def __init__(self, workers: int, depth: int, batch_size: int, frames: int, size: int, room: int,
                 shared: bool = True):
        self.frames, self.size = int(frames), int(size)
        self.capacity = batch_size * frames * room * room * 3
        self.slots = torch.empty((workers, depth, self.capacity), dtype=torch.uint8)
        self.busy = torch.zeros((workers, depth), dtype=torch.bool)
        if shared:  # filled by worker processes
            _check_shared_memory(self.slots.numel())
            self.slots.share_memory_()
            self.busy.share_memory_()
        self.filled = 0  # batches collated by this process (each worker counts its own)
        self.epoch = 0  # epochs begun by the main process

    def __call__(self, batch):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        depth = self.filled % self.busy.shape[1]
        self.filled += 1
        kept, skipped = _split(batch)
        cuts = self._fitted([cut for cut, _ in kept])
        shapes = tuple(cut[0].shape[:2] for cut in cuts)
        labels = [label for _, label in kept]  # a list: a tensor would cross in a shared-memory segment of its own
        nbytes = sum(_nbytes(cut) for cut in cuts)
        if not cuts or nbytes > self.capacity or self.busy[worker, depth]:
            buffer = ref = torch.empty(nbytes, dtype=torch.uint8)
        else:
            self.busy[worker, depth] = True
            buffer, ref = self.slots[worker, depth], Slot(worker, depth)
        for cut, clip in zip(cuts, Packed(buffer, shapes, self.frames).clips()):
            np.stack(cut, out=clip.numpy())
        return ref, shapes, labels, skipped

    def _fitted(self, cuts: list) -> list:
        """The cuts, with those that would overfill the slot resized to S x S here."""
        finished = self.frames * self.size * self.size * 3
        used, fitted = 0, []
        for k, cut in enumerate(cuts):
            if used + _nbytes(cut) + (len(cuts) - k - 1) * finished > self.capacity:
                clip = resize(torch.from_numpy(np.stack(cut)).permute(0, 3, 1, 2), (self.size, self.size))
                cut = list(clip.permute(0, 2, 3, 1).numpy())
            used += _nbytes(cut)
            fitted.append(cut)
        return fitted

    def take(self, ref, shapes) -> Packed:
        """The batch: in its slot (valid until `release`) or in the tensor it came in."""
        buffer = self.slots[ref.worker, ref.depth] if isinstance(ref, Slot) else ref
        return Packed(buffer, tuple(shapes), self.frames)

    def release(self, ref) -> None:
        if isinstance(ref, Slot):
            self.busy[ref.worker, ref.depth] = False

    def new_epoch(self) -> int:
        """Free every slot (between epochs no batch is being read) and return the new epoch's number."""
        self.busy.zero_()
        self.epoch += 1
        return self.epoch


class ClipLoader:
    """Iterates a DataLoader of packed uint8 batches and yields (clips, labels, skipped).

    The clips arrive finished, float32 [B, T, 3, S, S], resized and normalised once per batch: on `device`
    when one is given (the packed bytes copied from pinned memory without blocking), else on the CPU.
    `packed()` yields the workers' `Packed` batches instead, valid until the next batch is asked for.
    `dataset` and `len()` are the DataLoader's, `generator` its sampler's.
    """

    def __init__(self, loader: DataLoader, ring: BatchRing, mean, std, device=None, finish: bool = True):
        self.loader, self.ring = loader, ring
        self.device = torch.device(device) if device is not None else None
        self.mean, self.std = tuple(mean), tuple(std)
        self.finish = finish

    @property
    def dataset(self) -> ClipDataset:
        return self.loader.dataset

    @property
    def generator(self) -> torch.Generator:
        """Draws each epoch's order and per-sample seeds (`SeededSampler`): seed it to replay an epoch."""
        return self.loader.sampler.generator

    def __len__(self) -> int:
        return len(self.loader)

    def skip(self, batches: int) -> None:
        """Start the next epoch after its first `batches` batches (same order and draws as a full epoch)."""
        self.loader.sampler.start = batches * self.loader.batch_size

    def packed(self) -> "ClipLoader":
        """The same loader yielding the workers' `Packed` batches, before any copy, resize or normalisation."""
        return ClipLoader(self.loader, self.ring, self.mean, self.std, self.device, finish=False)

    def __iter__(self):
        epoch = self.ring.new_epoch()
        for ref, shapes, labels, skipped in self.loader:
            clips, labels = self.ring.take(ref, shapes), torch.as_tensor(labels, dtype=torch.long)
            try:
                if self.finish:
                    clips = self._finished(clips)
                    self.ring.release(ref)
                yield clips, labels, skipped
            finally:
                if self.ring.epoch == epoch:  # an iterator dropped late must not free a newer epoch's slot
                    self.ring.release(ref)

    def _finished(self, batch: Packed) -> torch.Tensor:
        """float32 [B, T, 3, S, S]: each clip resized (when its cut is not S x S already), then normalised."""
        buffer = batch.buffer[:batch.nbytes]
        if self.device is not None and self.device.type == "cuda":
            # pinned memory from torch's caching host allocator, reused only once this copy is done
            buffer = buffer.pin_memory().to(self.device, non_blocking=True)
        elif self.device is not None:
            buffer = buffer.to(self.device)
        size = self.ring.size
        out = torch.empty((len(batch.shapes), batch.frames, 3, size, size), dtype=torch.float32, device=buffer.device)
        for k, clip in enumerate(batch.clips(buffer)):
            out[k].copy_(resize(clip.permute(0, 3, 1, 2), (size, size)))
        return normalize(out, self.mean, self.std)


def build_loader(prepared_dir, split: str, *, train: bool, num_segments: int, input_size: int, scale_size: int,
                 flip: bool, batch_size: int, workers: int = 0, seed: int = 0, cache: bool = False,
                 store: DecodedStore | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD, device=None,
                 prefetch: int = 2, rank: int = 0, ranks: int = 1) -> ClipLoader:
    """Batches (clips, labels, skipped) of a prepared split; shuffled when training. Order, frames and
    augmentation follow from `seed` (and from reseeding `.generator` before an epoch) alone: the same
    for any number of workers.

    `workers` processes decode and cut (uint8) and pack each batch into a `BatchRing` slot with room for
    clips of max(input_size, scale_size) pixels square; each keeps up to `prefetch` batches ready. The
    clips are resized and normalised on `device` (default: the CPU); see `ClipLoader`. With `ranks` > 1
    this is rank `rank`'s loader of a multi-process run: its parts of global batches of `batch_size`.
    """
    if batch_size % ranks:
        raise ValueError(f"batch size {batch_size} does not split over {ranks} processes")
    dataset = ClipDataset(prepared_dir, split, num_segments=num_segments, train=train, input_size=input_size,
                          scale_size=scale_size, flip=flip, mean=mean, std=std, cache=cache, store=store,
                          finish=False)
    sampler = SeededSampler(len(dataset), train, torch.Generator().manual_seed(int(seed)), rank, ranks, batch_size)
    batch_size //= ranks
    # the DataLoader gives worker k every W-th batch and keeps `prefetch` of each worker's in flight (the
    # one it fills included), so with one more slot for the batch being read, no slot is ever found busy
    ring = BatchRing(max(1, workers), prefetch + 1 if workers else 1, batch_size, num_segments, input_size,
                     room=max(input_size, scale_size), shared=workers > 0)
    # its own generator for the workers' base seed: drawn when workers start, it must not shift the
    # global stream that dropout and the policies' Gumbel noise use (a resumed run starts them later)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        generator=torch.Generator().manual_seed(int(seed)),
                        collate_fn=ring, drop_last=False, persistent_workers=workers > 0,
                        prefetch_factor=prefetch if workers else None,
                        worker_init_fn=_worker_init if workers > 0 else None)
    return ClipLoader(loader, ring, mean, std, device)


__all__ = ["BatchRing", "ClipDataset", "ClipLoader", "Packed", "SeededSampler", "Skipped", "Unreadable", "build_loader",
           "class_names", "collate_skip", "num_classes", "read_index", "sample_indices"]
