"""The shared trainer and evaluator: outputs, resume after a crash, NaN loss, metrics.json."""
from __future__ import annotations

import csv
import json
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from fixtures_data import tiny_sthv1, tiny_sthv1_config

from vidbench import config as cfg
from vidbench import train as trainer
from vidbench.evaluate import evaluate


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    tiny_sthv1(root)
    return tiny_sthv1_config(root, epochs=3, lr_steps=[2])


def spec_for(config, method="tsm"):
    return cfg.resolve_run(config, "synth-sthv1", method, "default", "resnet_tiny", 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_train_then_evaluate_writes_every_output(config, tmp_path, workers):
    spec = spec_for(config, "tsn")
    spec["data"]["workers"] = workers
    result = trainer.train(spec, tmp_path, progress=False)
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "checkpoint.pt").exists()
    assert [row["epoch"] for row in result["history"]] == [1, 2, 3]
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == ",".join(trainer.LOG_FIELDS)
    metrics = evaluate(tmp_path, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics, default=str))
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
    assert metrics["gflops"] == pytest.approx(metrics["dense_gflops"])  # TSN is static
    assert metrics["num_videos"] == 24 and metrics["config"] == spec and metrics["execution"] == "masked"  # TSN: nothing to skip
    assert metrics["environment"]["packages"]["torch"].startswith("2.")


@pytest.mark.parametrize("workers", [0, 2])
def test_killed_training_resumes_to_the_same_weights(config, tmp_path, monkeypatch, workers):
    spec = spec_for(config)
    spec["data"]["workers"] = workers  # fresh loader workers after the restart draw the same clips
    uninterrupted = trainer.train(spec, tmp_path / "once", progress=False)

    real_epoch = trainer.train_epoch

    def crash_in_second_epoch(model, loader, optimizer, cfg_, device, epoch, *rest):
        if epoch == 1:
            raise KeyboardInterrupt("killed")
        return real_epoch(model, loader, optimizer, cfg_, device, epoch, *rest)

    monkeypatch.setattr(trainer, "train_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(spec, tmp_path / "twice", progress=False)
    saved = torch.load(tmp_path / "twice" / "checkpoint.pt", weights_only=True)
    assert saved["state"]["epoch"] == 1 and not (tmp_path / "twice" / "model.pt").exists()
    monkeypatch.setattr(trainer, "train_epoch", real_epoch)
    resumed = trainer.train(spec, tmp_path / "twice", progress=False)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_nan_loss_stops_with_a_clear_error(config, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer.F, "cross_entropy", lambda logits, labels: logits.sum() * float("nan"))
    with pytest.raises(trainer.TrainingError, match=r"loss is nan at epoch 1, step 1"):
        trainer.train(spec_for(config, "tsn"), tmp_path, progress=False)
    assert not (tmp_path / "model.pt").exists()


def test_too_many_unreadable_videos_stop_training():
    trainer.check_unreadable(0, 100, 0.01)
    trainer.check_unreadable(1, 100, 0.01)
    with pytest.raises(trainer.TrainingError, match="2 of 100 training videos were unreadable"):
        trainer.check_unreadable(2, 100, 0.01)


def corrupt_first_video(root, split: str):
    """Truncate every frame of the first video of `split` of the tiny dataset under `root`, after it was
    prepared: only loading can find out."""
    folder = (root / "prepared" / "synth-sthv1" / f"{split}.csv").read_text().splitlines()[1].split(",")[1]
    for frame in (root / "raw" / "synth-sthv1" / folder).glob("*.jpg"):
        frame.write_bytes(frame.read_bytes()[:20])


def test_unreadable_video_is_skipped_and_counted(tmp_path):
    tiny_sthv1(tmp_path, seed=1)
    corrupt_first_video(tmp_path, "val")
    spec = spec_for(tiny_sthv1_config(tmp_path), "tsn")
    spec["eval"]["batch_size"] = 1        # the first batch holds no readable video, every other batch one
    trainer.train(spec, tmp_path / "run", progress=False)
    metrics = evaluate(tmp_path / "run", progress=False)
    assert metrics["unreadable"] == {"count": 1, "eval": 1, "train": 0} and metrics["num_videos"] == 23


def test_released_recipe_groups_biases_and_norms():
    model = torch.nn.ModuleDict({"conv": torch.nn.Conv2d(3, 4, 3), "bn": torch.nn.BatchNorm2d(4),
                                 "fc": torch.nn.Linear(4, 2)})
    cfg = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "bias_lr_mult": 2.0}
    optimizer = trainer.make_optimizer(model, cfg)
    weights, biases, norms = ({id(p) for p in g["params"]} for g in optimizer.param_groups)
    assert weights == {id(model["conv"].weight), id(model["fc"].weight)}
    assert biases == {id(model["conv"].bias), id(model["fc"].bias)}
    assert norms == {id(model["bn"].weight), id(model["bn"].bias)}
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.02, 5e-4), (0.04, 0.0), (0.02, 0.0)]
    trainer.optim.step_lr(optimizer, 0.02, 1, [1], 0.1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.002, 0.004, 0.002])


def test_validation_during_training_logs_top1_and_keeps_the_best_epoch(config, tmp_path, monkeypatch):
    spec = spec_for(config, "tsn")
    spec["train"]["eval_every"] = 2  # epochs 2 and 3 (the last is always validated)
    scores = iter([40.0, 30.0])
    monkeypatch.setattr(trainer, "validate", lambda model, loader, device: next(scores))
    result = trainer.train(spec, tmp_path, progress=False)
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [row["val_top1"] for row in rows] == ["", "40.0", "30.0"]
    assert result["best"] == {"epoch": 2, "val_top1": 40.0}
    best = torch.load(tmp_path / trainer.BEST, weights_only=True)
    assert best["epoch"] == 2 and set(best["model"]) == set(result["model"])
    metrics = evaluate(tmp_path, progress=False)
    assert metrics["best"]["epoch"] == 2 and metrics["best"]["top1"] == 40.0 and "optimistic" in metrics["best"]["note"]
    assert metrics["epochs"] == 3


def test_validation_leaves_training_unchanged_and_is_the_evaluators_top1(config, tmp_path):
    spec = spec_for(config, "adafuse")
    spec["train"]["eval_every"] = 0
    plain = trainer.train(spec, tmp_path / "plain", progress=False)
    spec["train"]["eval_every"] = 1
    spec["model"]["eval_sampling"] = "gumbel"  # the policy draws from the global stream at evaluation
    validated = trainer.train(spec, tmp_path / "validated", progress=False)
    for name, tensor in plain["model"].items():
        assert torch.equal(tensor, validated["model"][name]), name
    spec["model"]["eval_sampling"] = "argmax"
    argmax = trainer.train(spec, tmp_path / "argmax", progress=False)
    assert argmax["history"][-1]["val_top1"] == round(evaluate(tmp_path / "argmax", progress=False)["top1"], 2)


def test_unreadable_training_video_is_counted(tmp_path):
    tiny_sthv1(tmp_path, seed=1)
    corrupt_first_video(tmp_path, "train")
    spec = spec_for(tiny_sthv1_config(tmp_path), "tsn")
    spec["train"].update(max_unreadable=0.5, epochs=2)
    trainer.train(spec, tmp_path / "run", progress=False)
    assert evaluate(tmp_path / "run", progress=False)["unreadable"] == {"count": 2, "eval": 0, "train": 2}


@pytest.mark.parametrize("gpus, launched", [(None, None), (1, None), (2, 2)])
def test_run_launches_one_process_a_gpu_and_exits_0(gpus, launched, tmp_path, monkeypatch):
    spec = {"run_dir": str(tmp_path), "train": {} if gpus is None else {"gpus": gpus}}
    calls = []
    monkeypatch.setattr(trainer, "spec_from_args", lambda args: spec)
    monkeypatch.setattr(trainer, "claim_for", lambda spec, count: nullcontext())
    monkeypatch.setattr(trainer, "launch", lambda spec, out, processes, progress: calls.append(processes))
    monkeypatch.setattr(trainer, "train", lambda spec, out, progress: calls.append("one process"))
    args = SimpleNamespace(out=None, no_progress=True, evaluate=False)
    assert trainer.run(args) == 0
    assert calls == [launched or "one process"]


def test_a_recorded_divergence_stops_the_run_unless_flagging_is_asked_for(tmp_path):
    state = {"diverged": "epoch 2 step 3: loss nan"}
    with pytest.raises(trainer.TrainingError, match="training diverged at epoch 2"):
        trainer.stop_if_diverged(state, {"lr": 0.1}, tmp_path)          # on_divergence defaults to fail
    trainer.stop_if_diverged(state, {"lr": 0.1, "on_divergence": "flag"}, tmp_path)
    trainer.stop_if_diverged({"diverged": None}, {"lr": 0.1}, tmp_path)


def test_epoch_totals_of_the_ranks_add_up():
    ranks = [{"loss": 1.0, "correct": 3, "flops": 10.0, "videos": 4, "skipped": 0, "seconds": 2.0,
              "unreadable": {"a.mp4": "bad"}},
             {"loss": 2.0, "correct": 1, "flops": 30.0, "videos": 4, "skipped": 1, "seconds": 5.0,
              "unreadable": {"b.mp4": "bad"}}]
    merged = trainer.merge_totals(ranks)
    assert (merged["loss"], merged["correct"], merged["flops"], merged["videos"], merged["skipped"]) == (3.0, 4, 40.0, 8, 1)
    assert merged["seconds"] == 5.0 and set(merged["unreadable"]) == {"a.mp4", "b.mp4"}
    assert ranks[0]["unreadable"] == {"a.mp4": "bad"}                    # the ranks' own totals untouched
