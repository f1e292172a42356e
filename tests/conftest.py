"""Shared fixtures: a tiny prepared dataset and the resolved spec of a short training run on it."""
from __future__ import annotations

import pytest
from fixtures_data import tiny_sthv1, tiny_sthv1_config
from hypothesis import settings

from vidbench import config as cfg

# property tests: the same examples on every run (CI stays reproducible), no per-example deadline (shared CPUs)
settings.register_profile("vidbench", derandomize=True, database=None, deadline=None, max_examples=60)
settings.load_profile("vidbench")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    """The test config on one tiny synthetic Something-V1 dataset (3 train / 2 val videos per class), prepared."""
    root = tmp_path_factory.mktemp("tiny-run")
    tiny_sthv1(root)
    return tiny_sthv1_config(root, epochs=2, lr_steps=[1])


@pytest.fixture
def train_spec(tiny_config):
    """A fresh resolved spec of a TSN run (2 epochs) on the tiny dataset; tests may modify it."""
    return cfg.resolve_run(tiny_config, "synth-sthv1", "tsn", "default", "resnet_tiny", 0)


@pytest.fixture
def untrained_run(tiny_config, tmp_path):
    """A factory: make(method, **model_overrides) -> the run directory `vidbench train` would leave for an
    untrained model of `method` on the tiny dataset (spec.json and model.pt), so `evaluate` needs no training."""
    from vidbench import io as vio
    from vidbench.engine import SPEC_FILE, build_model, seed_everything
    from vidbench.flops import count_params
    from vidbench.train import FINAL

    def make(method: str, **overrides):
        spec = cfg.resolve_run(tiny_config, "synth-sthv1", method, "default", "resnet_tiny", 0)
        spec["model"].update(overrides)
        run_dir = tmp_path / method
        seed_everything(spec["seed"])
        model = build_model(spec)
        vio.write_json(run_dir / SPEC_FILE, spec)
        vio.save_torch({"spec": spec, "model": model.state_dict(), "costs": model.costs,
                        "params": count_params(model), "train_time_s": 0.0, "skipped": 0, "unreadable": [],
                        "history": []}, run_dir / FINAL)
        return run_dir

    return make
