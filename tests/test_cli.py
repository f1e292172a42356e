"""The command line a new user meets: help with defaults, required options, one-line errors, --version."""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from vidbench import __version__
from vidbench.cli import COMMANDS
from vidbench.cli import main as cli


def vidbench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidbench", *args], capture_output=True, text=True, timeout=120)


REPORT_COMMANDS = ("aggregate", "tables", "plots", "claims", "realized", "policy-plots")


def test_the_report_commands_and_the_workflows_config_do_not_import_torch():
    """Each report job and the workflow's own process would spend about a second importing it."""
    modules = [COMMANDS[name][0] for name in REPORT_COMMANDS] + ["vidbench.config", "vidbench.sources"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "from vidbench.plugins import discover\ndiscover()\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_backbone_is_named_where_the_configs_read_backbone_names():
    from vidbench.backbone_values import BACKBONES
    from vidbench.backbones import backbone_names
    assert sorted(BACKBONES) == backbone_names()


def test_version_prints_the_package_version():
    result = vidbench("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vidbench {__version__}"


def test_evaluate_of_a_missing_run_is_one_line_without_a_traceback():
    result = vidbench("evaluate", "--run", "/missing")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vidbench evaluate: error: /missing/spec.json: cannot read the run's spec: No such file or directory "
        "(expected a run directory written by `vidbench train`)"]


def test_a_spec_that_is_not_a_run_spec_is_one_line(capsys):
    assert cli(["train", "--spec", "{}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidbench train: error: --spec: not a resolved run spec: no dataset, "
                                               "method, point")


def test_a_file_system_error_is_one_line_naming_the_path(train_spec, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"                       # a run directory under a file: mkdir fails
    assert cli(["train", "--spec", json.dumps(train_spec), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidbench train: error: ") and str(tmp_path / "file") in err[0]
    assert err[0].endswith("Not a directory")


def test_debug_shows_the_traceback():
    result = vidbench("--debug", "evaluate", "--run", "/missing")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_train_without_dataset_or_method_says_they_are_required(capsys):
    assert cli(["train", "--method", "tsn"]) == 2
    assert "--dataset: required without --spec" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help(command):
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    assert [a.dest for a in parser._actions if not a.help] == []


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "backbone (resnet_tiny, resnet18, resnet50) (default: resnet_tiny)" in text
    assert "seed of the run (default: 0)" in text
