"""One source of truth for config: the dataclasses of latentwm.config hold every default; the
committed schema and config.yaml must agree with them; the parse-time check imports no torch."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latentwm.config import data, dynamics, evaluation, schema, tokenizer, train
from latentwm.config.fields import from_dict, to_dict
from latentwm.config.schema import schema_yaml
from latentwm.core.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schema_is_the_generated_one():
    committed = (ROOT / "schemas/config.schema.yaml").read_text()
    assert committed == schema_yaml(), "regenerate it: python -m latentwm.config > schemas/config.schema.yaml"


def _defaults(section) -> dict:
    return to_dict(section)


def _compare(path: str, given, default) -> list[str]:
    if isinstance(given, dict) and isinstance(default, dict):
        return [line for k, v in given.items() for line in _compare(f"{path}.{k}", v, default.get(k, "<missing>"))]
    if isinstance(default, tuple):
        default = list(default)
    return [] if given == default else [f"{path}: config.yaml {given!r}, default {default!r}"]


def test_config_yaml_states_the_defaults():
    """config.yaml documents the defaults: every value it sets is the dataclass default (only
    `sources` is its own), so a script run by hand trains as the pipeline does."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    diffs = []
    for name, cls in schema.SECTIONS.items():
        diffs += _compare(name, config.get(name, {}), _defaults(cls()))
    for name, section in config["evaluations"].items():
        diffs += _compare(f"evaluations.{name}", section, _defaults(evaluation.EvalConfig()))
    assert diffs == []


def test_every_field_is_documented_or_self_explanatory():
    """A field without a doc line must be one of the few whose name says it all."""
    plain = {"seed", "retries", "socket_timeout", "height", "width", "weight_decay", "beta2", "grad_clip", "device",
             "enabled", "short_window", "long_window", "short_batch", "long_batch", "fps", "kind", "steps", "tau_ctx"}

    def walk(cls):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
                continue
            yield cls.__name__, f

    undocumented = [f"{c}.{f.name}" for cls in [*schema.SECTIONS.values(), dynamics.DynamicsConfig, train.TrainConfig,
                                                 tokenizer.TokenizerConfig, dynamics.ObjectiveConfig, dynamics.DataConfig,
                                                 evaluation.EvalConfig, data.GeneratorConfig]
                    for c, f in walk(cls) if not f.metadata.get("doc") and f.name not in plain
                    and not dataclasses.is_dataclass(getattr(cls(), f.name, None))]
    assert undocumented == []


def test_from_dict_refuses_values_outside_the_constraints():
    with pytest.raises(PipelineError, match=r"^config key tokenizer.train.lr is -1; expected a value > 0$"):
        from_dict(tokenizer.TokenizerStage, {"train": {"lr": -1}}, "tokenizer")
    with pytest.raises(PipelineError, match=r"dynamics.objective.schedule is 'pyramid'; expected one of: context, independent"):
        from_dict(dynamics.DynamicsStage, {"objective": {"schedule": "pyramid"}}, "dynamics")
    with pytest.raises(PipelineError, match=r"evaluations.x.samplers\[1\].kind is 'rk4'"):
        from_dict(evaluation.EvalConfig, {"samplers": [{"name": "a", "kind": "euler", "steps": 2},
                                                     {"name": "b", "kind": "rk4", "steps": 2}]}, "evaluations.x")
    stage = from_dict(dynamics.DynamicsStage, {"data": {"batch_size": 5}, "train": {"steps": 7}}, "dynamics")
    assert stage.train.batch_size == 5 and stage.train.steps == 7 and stage.train.warmup == 50  # the stage's own default


def test_dynamics_window_sets_the_attention_window_once():
    tf = {"arch": "transformer"}
    stage = from_dict(dynamics.DynamicsStage, {"data": {"window": 6}, "model": tf}, "dynamics")
    assert stage.model_config([8, 16, 16]).max_frames == 6
    alt = {"alternating": {"enabled": True, "short_window": 4, "long_window": 12}}
    assert from_dict(dynamics.DynamicsStage, {"data": alt, "model": tf}, "dynamics").model_config([8, 16, 16]).max_frames == 12
    with pytest.raises(PipelineError, match="window 12 exceeds dynamics.model.max_frames 8"):
        from_dict(dynamics.DynamicsStage, {"data": alt, "model": {**tf, "max_frames": 8}}, "dynamics").model_config([8, 16, 16])
    # the conv sees conv_frames past frames whatever the window: longer windows hold more rollout steps
    conv = from_dict(dynamics.DynamicsStage, {"data": alt, "model": {"arch": "conv", "conv_frames": 3}}, "dynamics")
    assert conv.model_config([8, 16, 16]).max_frames == 4


def _latentwm_imports(files) -> list[str]:
    """Every `from latentwm...`/`import latentwm...` line of `files` (at any indent, a parenthesised
    one up to its closing parenthesis), dedented."""
    pattern = r"^ *(from|import) latentwm(\S* import \([^)]*\)|.*)$"
    return [m.group(0).strip() for f in files for m in re.finditer(pattern, f.read_text(), re.M)]


def test_parse_time_check_imports_no_torch():
    # what the workflow imports while Snakemake parses it (every `from latentwm...` line of the
    # Snakefile and rules/), then the config check: none of it may pull in a heavy library
    # (a parenthesised import runs over several lines: up to its closing parenthesis)
    lines = _latentwm_imports([ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))])
    assert any("latentwm.data.sources" in line for line in lines), lines
    code = (
        "import sys, yaml\n" + "\n".join(lines) + "\n"
        "from latentwm.pipeline.check import config_problems\n"
        f"config = yaml.safe_load(open({str(ROOT / 'config.yaml')!r}))\n"
        f"assert config_problems(config, {str(ROOT / 'schemas/config.schema.yaml')!r}) == []\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'zarr', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# the jobs that touch no network weights: each is a fresh Python process per video, and torch's
# import (about 2 s) would be most of its time (48 clips: the data stages 3 min 16 s with it, 59 s without)
DATA_SCRIPTS = ["download", "extract_frames", "given_actions", "splits", "resolve_source", "source_away",
                "plot_training", "plot_evaluation"]


def test_data_jobs_import_no_torch():
    scripts = [ROOT / "workflow_scripts" / f"{name}.py" for name in DATA_SCRIPTS]
    lines = _latentwm_imports(scripts)
    assert any("latentwm.data.video" in line for line in lines), lines
    code = (
        "import sys\n" + "\n".join(lines) + "\n"
        "from latentwm.core.logs import logger\n"
        "logger(None)('a line')\n"  # every job logs: asking for its rank must not import torch
        "assert 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')][:3]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
