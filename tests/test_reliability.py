"""The fault suite: each fault a user or a cluster can inject into a run, and what the harness promises."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidbench import io as vio
from vidbench import train as trainer
from vidbench.cli import main as cli
from vidbench.data.prepare import prepare
from vidbench.data.synth import generate
from vidbench.errors import InputError
from vidbench.evaluate import evaluate, run_status
from vidbench.rundir import CHECKPOINT, PREEMPTED_EXIT, Checkpoints, ConfigChanged, Preempted, RunLock, RunLocked
from vidbench.train import FINAL, train


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker), "state": {"epoch": 1}}, path)


def test_crafted_pickle_is_refused_naming_the_file(tmp_path):
    marker, planted = tmp_path / "pwned", tmp_path / "file.pt"
    plant_pickle(planted, marker)
    with pytest.raises(vio.UnreadableFile, match=str(planted)):
        vio.load_torch(planted)
    assert not marker.exists()


def test_crafted_checkpoint_runs_nothing(train_spec, tmp_path):
    marker, run = tmp_path / "pwned", tmp_path / "run"
    plant_pickle(run / CHECKPOINT, marker)
    with pytest.raises(vio.UnreadableFile, match=str(run / CHECKPOINT)):
        train(train_spec, run, progress=False)
    assert not marker.exists()


def test_crafted_model_file_runs_nothing(train_spec, tmp_path):
    marker, run = tmp_path / "pwned", tmp_path / "run"
    vio.write_json(run / "spec.json", train_spec)
    plant_pickle(run / FINAL, marker)
    with pytest.raises(vio.UnreadableFile, match=str(run / FINAL)):
        evaluate(run, progress=False)
    assert not marker.exists()


# ----------------------------------------------------------------- runs that match their config


def interrupt_at_step(monkeypatch, step, how="kill"):
    """Make training stop after its `step`-th optimisation step: killed (KeyboardInterrupt) or asked to
    stop by a real signal (`how`: "SIGTERM", "SIGUSR1") sent to this process."""
    real_step, calls = trainer.train_step, {"n": 0}

    def step_then_stop(*args):
        result = real_step(*args)
        calls["n"] += 1
        if calls["n"] == step:
            if how == "kill":
                raise KeyboardInterrupt("killed")
            os.kill(os.getpid(), getattr(signal, how))
        return result

    monkeypatch.setattr(trainer, "train_step", step_then_stop)


def test_resume_under_a_changed_config_stops_and_names_the_keys(train_spec, tmp_path, monkeypatch):
    run = tmp_path / "run"
    interrupt_at_step(monkeypatch, 6)  # in the second epoch: the first epoch's checkpoint is on disk
    with pytest.raises(KeyboardInterrupt):
        trainer.train(train_spec, run, progress=False)
    monkeypatch.undo()
    before = {name: (run / name).read_bytes() for name in ("spec.json", "log.csv", CHECKPOINT)}
    changed = {**train_spec, "train": {**train_spec["train"], "lr": 0.05}}
    with pytest.raises(ConfigChanged, match=r"train\.lr: 0\.01 -> 0\.05.*delete"):
        trainer.train(changed, run, progress=False)
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing of the new run mixed in
    trainer.train(train_spec, run, progress=False)  # the old config still resumes
    assert (run / FINAL).exists()


def test_a_second_trainer_on_a_locked_run_stops_at_once(train_spec, tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            trainer.train(train_spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "spec.json").exists()


# ----------------------------------------------------------------- preemption


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_mid_epoch_then_rerun_gives_identical_weights(train_spec, tmp_path, monkeypatch, workers):
    train_spec["data"]["workers"] = workers
    train_spec["train"]["epochs"] = 3
    once = trainer.train(train_spec, tmp_path / "once", progress=False)
    interrupt_at_step(monkeypatch, 7, how="SIGTERM")  # epoch 2 of 3, batch 2 of 5
    with pytest.raises(Preempted, match=r"stopped by SIGTERM in epoch 2 after batch 2"):
        trainer.train(train_spec, tmp_path / "twice", progress=False)
    saved = torch.load(tmp_path / "twice" / CHECKPOINT, weights_only=True)
    assert saved["partial"][0]["batches"] == 2 and saved["state"]["epoch"] == 1  # [0]: the one rank's
    monkeypatch.undo()
    resumed = trainer.train(train_spec, tmp_path / "twice", progress=False)
    assert resumed["history"][1]["loss"] == once["history"][1]["loss"]  # the interrupted epoch's row is whole
    for name, tensor in once["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


@pytest.mark.parametrize("how", ["SIGTERM", "SIGUSR1"])  # SIGUSR1: what the slurm profile asks for before the time limit
def test_preempted_training_exits_with_its_own_code_and_message(train_spec, tmp_path, monkeypatch, capsys, how):
    interrupt_at_step(monkeypatch, 2, how=how)
    status = cli(["train", "--spec", json.dumps(train_spec), "--out", str(tmp_path / "run"), "--no-progress"])
    assert status == PREEMPTED_EXIT
    assert f"stopped by {how} in epoch 1 after batch 2" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["partial"][0]["batches"] == 2


# ----------------------------------------------------------------- degenerate runs


def test_empty_training_list_stops_before_training(train_spec, tmp_path):
    prepared = Path(shutil.copytree(train_spec["data"]["prepared"], tmp_path / "prepared"))
    (prepared / "train.csv").write_text((prepared / "train.csv").read_text().splitlines()[0] + "\n")
    train_spec["data"]["prepared"] = str(prepared)
    with pytest.raises(InputError, match=re.escape(str(prepared / "train.csv")) + ": no training video"):
        trainer.train(train_spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / FINAL).exists()
    # the workflow's job (train, then evaluate): no metrics.json, so no summary row
    assert cli(["train", "--spec", json.dumps(train_spec), "--out", str(tmp_path / "run"), "--evaluate"]) == 2
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("epochs", [1, 2])  # 1: the divergence is in the last epoch, so a rerun trains nothing
def test_exploding_loss_fails_the_run_or_flags_it(train_spec, tmp_path, epochs):
    train_spec["train"].update(lr=1.0e6, epochs=epochs)
    for attempt in range(2):  # a rerun (Snakemake's, the slurm profile's retries) fails again, from the checkpoint
        with pytest.raises(trainer.TrainingError, match=r"diverged at epoch 1: mean training loss .* chance level"):
            trainer.train(train_spec, tmp_path / "failed", progress=False)
        assert not (tmp_path / "failed" / FINAL).exists()
    train_spec["train"]["on_divergence"] = "flag"
    trainer.train(train_spec, tmp_path / "flagged", progress=False)
    assert evaluate(tmp_path / "flagged", progress=False)["status"].startswith("diverged: epoch 1")


def test_a_model_predicting_one_class_is_flagged_degenerate():
    labels = torch.arange(10) % 5
    one_class = torch.zeros(10, 5)
    one_class[:, 3] = 1.0
    assert run_status({}, one_class, labels).startswith("degenerate: class 3 predicted for 100%")
    assert run_status({}, torch.eye(5)[labels], labels) == "ok"


# ----------------------------------------------------------------- corrupt files, disk full, permissions


def test_a_crash_while_writing_a_checkpoint_leaves_the_last_one_in_place(tmp_path, monkeypatch):
    checkpoints = Checkpoints(tmp_path, {"train.lr": 0.01})
    checkpoints.save({"epoch": 1})

    def disk_full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(vio, "save_torch", disk_full)
    with pytest.raises(OSError):
        checkpoints.save({"epoch": 2})
    monkeypatch.undo()
    assert (tmp_path / CHECKPOINT).exists() and checkpoints.load()["epoch"] == 1


def test_truncated_checkpoint_is_named_moved_aside_and_the_rerun_completes(train_spec, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    interrupt_at_step(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(train_spec, run, progress=False)
    monkeypatch.undo()
    data = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(data[:len(data) // 2])
    trainer.train(train_spec, run, progress=False)
    err = capsys.readouterr().err
    assert f"{run / CHECKPOINT}: cannot read it" in err
    assert "moved it to checkpoint.pt.corrupt, no older checkpoint: training starts over" in err
    assert (run / FINAL).exists() and (run / "checkpoint.pt.corrupt").exists()


def test_a_truncated_checkpoint_resumes_from_the_previous_one(train_spec, tmp_path, monkeypatch, capsys):
    train_spec["train"]["epochs"] = 3
    once = trainer.train(train_spec, tmp_path / "once", progress=False)
    run = tmp_path / "run"
    interrupt_at_step(monkeypatch, 11)  # in epoch 3: checkpoints of epochs 2 (current) and 1 (previous)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(train_spec, run, progress=False)
    monkeypatch.undo()
    (run / CHECKPOINT).write_bytes((run / CHECKPOINT).read_bytes()[:100])
    resumed = trainer.train(train_spec, run, progress=False)
    err = capsys.readouterr().err
    assert "resuming from checkpoint.prev.pt" in err and f"resuming {run} from the end of epoch 1" in err
    assert all(torch.equal(tensor, resumed["model"][name]) for name, tensor in once["model"].items())


def test_disk_full_is_one_message_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "out" / "summary.csv"
    status = cli(["aggregate", "--out", str(target), "--metrics"])
    err = capsys.readouterr().err
    assert status == 1 and err.strip() == (f"vidbench aggregate: error: {target}: cannot write it: "
                                           "No space left on device")
    assert list((tmp_path / "out").iterdir()) == []


def test_result_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        vio.write_json(tmp_path / "metrics.json", {"top1": 1.0})
        vio.save_torch({"w": torch.zeros(1)}, tmp_path / "model.pt")
    finally:
        os.umask(previous)
    for name in ("metrics.json", "model.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# ----------------------------------------------------------------- data paths stay inside the root


@pytest.fixture(scope="module")
def sthv1_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("escape") / "sthv1"
    generate("sthv1", root, train_per_class=1, val_per_class=1, seed=0)
    return root


@pytest.mark.parametrize("video_id", ["../../outside/secret", "/etc/passwd"])
def test_list_entry_outside_the_root_stops_prepare_at_its_line(sthv1_root, tmp_path, video_id):
    root = Path(shutil.copytree(sthv1_root, tmp_path / "root"))
    listing = root / "something-something-v1-train.csv"
    lines = listing.read_text().splitlines()
    label = lines[0].split(";")[1]
    listing.write_text("\n".join(lines + [f"{video_id};{label}"]) + "\n")
    with pytest.raises(InputError, match=re.escape(f"{listing}:{len(lines) + 1}: video {video_id!r}") + ".*outside"):
        prepare("sthv1", root, tmp_path / "prepared")


def test_symlinked_dataset_root_still_prepares(sthv1_root, tmp_path):
    (tmp_path / "link").symlink_to(sthv1_root, target_is_directory=True)
    report = prepare("sthv1", tmp_path / "link", tmp_path / "prepared", quiet=True)
    assert report["ok"] and report["counts"]["train"] > 0


def test_split_without_a_usable_video_stops_prepare(sthv1_root, tmp_path):
    root = Path(shutil.copytree(sthv1_root, tmp_path / "root"))
    listing = root / "something-something-v1-validation.csv"
    for line in listing.read_text().splitlines():
        shutil.rmtree(root / "20bn-something-something-v1" / line.split(";")[0])
    with pytest.raises(InputError, match=r"no usable val video: \d+ annotated, \d+ missing"):
        prepare("sthv1", root, tmp_path / "prepared")


def test_sigterm_to_the_whole_job_with_loader_workers_checkpoints_and_exits_75(train_spec, tmp_path):
    # as Slurm does at a time limit: the signal goes to every process of the job, loader workers included
    train_spec["data"]["workers"] = 2
    train_spec["train"]["epochs"] = 8
    job = subprocess.Popen([sys.executable, "-m", "vidbench", "train", "--spec", json.dumps(train_spec),
                            "--out", str(tmp_path / "run"), "--no-progress"], stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    for line in job.stderr:
        if line.startswith("epoch 1/8"):
            os.killpg(job.pid, signal.SIGTERM)
            break
    err = job.stderr.read()
    assert job.wait(timeout=120) == PREEMPTED_EXIT, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err and (tmp_path / "run" / CHECKPOINT).exists()
