"""Multi-process training (gloo on the CPU, 2 processes under torchrun) and mixed precision."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidbench import io as vio
from vidbench import train as trainer
from vidbench.data.dataset import SeededSampler
from vidbench.engine import build_model, seed_everything
from vidbench.rundir import CHECKPOINT, PREEMPTED_EXIT, PREVIOUS
from vidbench.train import FINAL, LOG

ROOT = Path(__file__).resolve().parents[1]
# float rounding: the ranks sum their BatchNorm statistics and average their gradients in another order;
# SGD, since Adam's division by the root of tiny second moments magnifies such rounding
def close_updates(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor, share: float = 0.05) -> bool:
    """a and b, trained from `start`, differ by at most `share` of b's largest change (+ 1e-6): float
    reduction order grows to about 1% of it in a 1-epoch run (the training is chaotic at this scale); a
    wrong gradient share changes the updates by ~100%."""
    change = (b.float() - start.float()).abs().max()
    return bool((a.float() - b.float()).abs().max() <= share * change + 1e-6)


def two_process_spec(train_spec, epochs=2):
    spec = copy.deepcopy(train_spec)
    spec["model"]["dropout"] = 0.0  # no per-rank random stream in the model: the runs can be compared
    spec["train"].update(epochs=epochs, batch_size=6, gpus=2, device="cpu", eval_every=0, optimizer="sgd")
    return spec


def launch(spec, out, **popen):
    """`vidbench train` as the workflow runs it: the launcher starts torchrun with train.gpus processes."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "vidbench", "train", "--spec", json.dumps(spec), "--out",
                             str(out), "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (torchrun starts each rank in a session of its own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def finished(job, timeout=300) -> str:
    output, _ = job.communicate(timeout=timeout)
    assert job.returncode == 0, output
    return output


def two_process_run(tmp_path_factory, tiny_config, epochs):
    from vidbench import config as cfg
    spec = cfg.resolve_run(tiny_config, "synth-sthv1", "tsn", "default", "resnet_tiny", 0)
    spec = two_process_spec(spec, epochs=epochs)
    out = tmp_path_factory.mktemp("ddp") / "run"
    finished(launch(spec, out))
    return spec, vio.load_torch(out / FINAL)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, tiny_config):
    """1 epoch: float rounding grows with every epoch (the training is chaotic at this scale, one process
    or two; on an AMD EPYC it passed the weights' tolerance within 2 epochs)."""
    return two_process_run(tmp_path_factory, tiny_config, epochs=1)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, tiny_config):
    """12 short epochs: time to interrupt the run after its first checkpoint."""
    return two_process_run(tmp_path_factory, tiny_config, epochs=12)


def test_sampler_splits_every_global_batch_over_the_ranks():
    def epoch(rank, ranks):
        return list(SeededSampler(11, True, torch.Generator().manual_seed(3), rank, ranks, batch=4))

    whole = epoch(0, 1)
    first, second = epoch(0, 2), epoch(1, 2)            # global batches of 4, 4 and 3: parts 2+2, 2+2, 2+1
    assert first[0:2] + second[0:2] + first[2:4] + second[2:4] + first[4:6] + second[4:5] == whole
    assert [epoch(r, 4) for r in range(4)] == [[whole[r], whole[4 + r]] for r in range(4)]  # 3 < 4 ranks: left out


def test_two_processes_follow_the_one_process_run(short_run, tmp_path):
    spec, ranks2 = short_run
    single = trainer.train({**spec, "train": {**spec["train"], "gpus": 1}}, tmp_path / "one", progress=False)
    assert ranks2["processes"] == 2 and single["processes"] == 1
    for two, one in zip(ranks2["history"], single["history"]):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-4) and two["top1"] == one["top1"]
    # the weights at the start, as training builds them: the runs must agree on what training changed
    seed_everything(spec["seed"])
    initial = build_model(spec).state_dict()
    for name, tensor in single["model"].items():
        assert close_updates(ranks2["model"][name], tensor, initial[name]), name


def test_without_sync_bn_each_process_normalises_its_own_share(short_run, tmp_path):
    spec, synced = short_run
    spec = {**spec, "train": {**spec["train"], "sync_bn": False, "epochs": 1}}
    finished(launch(spec, tmp_path / "run"))
    alone = vio.load_torch(tmp_path / "run" / FINAL)
    assert alone["history"][0]["loss"] != pytest.approx(synced["history"][0]["loss"], rel=1e-4)


@pytest.mark.parametrize("how", ["kill", "sigterm"])
def test_interrupted_two_process_run_resumes_to_the_same_weights(long_run, tmp_path, how):
    spec, uninterrupted = long_run
    out = tmp_path / "run"
    job = launch(spec, out)
    while not (out / LOG).exists():  # the first epoch's checkpoint is written just before its log
        assert job.poll() is None, job.communicate()[0]
        time.sleep(0.05)
    if how == "kill":
        for pid in process_tree(job.pid):  # the whole job at once, as a node failure
            os.kill(pid, signal.SIGKILL)
        job.communicate()
    else:
        job.send_signal(signal.SIGTERM)  # to the launcher, as Slurm or Snakemake stop a job
        output, _ = job.communicate(timeout=120)
        assert job.returncode == PREEMPTED_EXIT, output
        assert "rerun to continue" in output and "Traceback" not in output
    assert ((out / CHECKPOINT).exists() or (out / PREVIOUS).exists()) and not (out / FINAL).exists()
    assert "resuming" in finished(launch(spec, out))
    resumed = vio.load_torch(out / FINAL)
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert [row["loss"] for row in resumed["history"]] == [row["loss"] for row in uninterrupted["history"]]


def test_bf16_trains_with_a_finite_loss_and_counts_the_same_flops(train_spec, tmp_path):
    from vidbench.evaluate import evaluate

    train_spec["train"]["epochs"] = 1
    full = trainer.train(train_spec, tmp_path / "fp32", progress=False)
    train_spec["train"]["amp"] = "bf16"
    result = trainer.train(train_spec, tmp_path / "bf16", progress=False)
    assert result["amp"] == "bf16" and torch.isfinite(torch.tensor(result["history"][0]["loss"]))
    assert result["history"][0]["gflops"] == full["history"][0]["gflops"] > 0   # precision changes no FLOP count
    metrics = {amp: evaluate(tmp_path / amp, progress=False) for amp in ("fp32", "bf16")}
    assert metrics["bf16"]["training"] == {"amp": "bf16", "processes": 1}
    assert metrics["fp32"]["training"]["amp"] == "off" and metrics["bf16"]["gflops"] == metrics["fp32"]["gflops"]


def test_fp16_resume_restores_the_gradient_scaler(train_spec, tmp_path, monkeypatch):
    train_spec["train"].update(amp="fp16", epochs=2)
    run = tmp_path / "run"
    real_step, calls = trainer.train_step, {"n": 0}

    def step_then_sigterm(*args):
        result = real_step(*args)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(trainer, "train_step", step_then_sigterm)
    with pytest.raises(trainer.Preempted):
        trainer.train(train_spec, run, progress=False)
    monkeypatch.undo()
    saved = torch.load(run / CHECKPOINT, weights_only=True)
    assert saved["scaler"]["scale"] == 65536.0  # fp16 scales its loss (bf16 and float32 would save no scale)
    saved["scaler"]["scale"] = 1024.0           # as if the scale had backed off during the first steps
    vio.save_torch(saved, run / CHECKPOINT)
    made = []

    class Recorded(trainer.Precision):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(trainer, "Precision", Recorded)
    trainer.train(train_spec, run, progress=False)
    assert made[0].scaler.get_scale() == 1024.0


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused(tiny_config):
    from vidbench import config as cfg
    from vidbench.errors import InputError
    config = copy.deepcopy(dict(tiny_config))
    config["train"].update(gpus=3, batch_size=8)
    with pytest.raises(InputError, match=r"train\.batch_size 8 does not split over train\.gpus 3"):
        cfg.validate_config(config)
