"""The whole config checked when the Snakefile is parsed, before any job runs.

`config_problems(config, schema)` returns one line per problem, each naming the key and what it
expects: JSON-schema violations (unknown keys, wrong types, out-of-range values), then what the
schema cannot say because it spans stages:
- every stage's section builds its dataclasses (the same from_dict the jobs use);
- the dynamics model fits the latents the tokenizer will produce (channels, grid, patch);
- training windows and evaluation spans fit in frames.min_frames, the shortest video the
  pipeline keeps (extraction refuses shorter ones), so no stage finds every video too short;
- train, val and test each get a video, where the videos are known before any job
  (generator and path sources; URL sources are counted by the splits job);
- the sources as a whole: each id and each local file once (sources.sources_problems);
- every sampler of every evaluation fits the dynamics model's k_max and its training (shortcut steps need shortcut forcing), so a bad sampler
  fails now and not in evaluation, after all the training.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from latentwm.config.data import FramesConfig, SplitsConfig
from latentwm.config.dynamics import DynamicsStage
from latentwm.config.evaluation import EvalConfig
from latentwm.config.fields import from_dict
from latentwm.config.tokenizer import TokenizerStage
from latentwm.core.errors import PipelineError
from latentwm.data.sources import all_video_specs, pinned_splits, sources_problems
from latentwm.data.splits import assign_splits


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _schema_line(e: jsonschema.ValidationError) -> str:
    where = _path(e.absolute_path)
    v, s = e.validator, e.schema
    if v == "additionalProperties":
        unknown = sorted(set(e.instance) - set(s.get("properties", {})))
        key = f"{where}.{unknown[0]}" if e.absolute_path else unknown[0]
        return f"config key {key} is unknown; expected one of: {', '.join(sorted(s.get('properties', {})))}"
    if v == "type":
        return f"config key {where} is {e.instance!r}; expected {' or '.join(map(str, [s['type']] if isinstance(s['type'], str) else s['type']))}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"config key {where} is {e.instance!r}; expected a value {op} {e.validator_value}"
    if v == "enum":
        return f"config key {where} is {e.instance!r}; expected one of: {', '.join(map(str, e.validator_value))}"
    if v == "pattern":
        return f"config key {where} is {e.instance!r}; expected it to match {e.validator_value}"
    if v == "required":
        return f"config key {where}: {e.message}"
    if v == "oneOf" and where.startswith("sources"):
        return f"config key {where} must have exactly one of url, path, generator"
    return f"config key {where}: {e.message}"


def schema_problems(config: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_schema_line(e) for e in errors]


def _stage_problems(config: dict) -> list[str]:
    """Sections that pass the schema but not their stage's own checks (torch-free: settings only)."""
    problems: list[str] = []

    def attempt(fn):
        try:
            return fn()
        except (PipelineError, TypeError, ValueError) as e:  # the last two: __post_init__ refusals
            problems.append(str(e))
        return None

    frames = attempt(lambda: from_dict(FramesConfig, config.get("frames"), "frames")) or FramesConfig()
    tok = attempt(lambda: from_dict(TokenizerStage, config.get("tokenizer"), "tokenizer"))
    dyn = attempt(lambda: from_dict(DynamicsStage, config.get("dynamics"), "dynamics"))
    latent_shape = attempt(lambda: tok.model.latent_shape(frames.height, frames.width)) if tok else None
    model = None
    if latent_shape is not None and dyn is not None:
        h, w, d, patch = frames.height, frames.width, tok.model.downsample, dyn.model.patch
        if dyn.model.arch == "transformer" and (latent_shape[1] % patch or latent_shape[2] % patch):
            # a frame size the patch grid cannot tile is a frame-size question first: name both keys
            problems.append(
                f"config key frames.height/width is {h}x{w}: tokenizer.model.downsample {d} makes a "
                f"{latent_shape[1]}x{latent_shape[2]} latent grid that dynamics.model.patch {patch} cannot tile; "
                f"expected frames.height and width multiples of {d * patch} (downsample x patch), or a patch that divides the grid"
            )
        else:
            model = attempt(lambda: dyn.model_config(latent_shape))
    for key, t in (dyn.data.windows() if dyn else {}).items():
        if t > frames.min_frames:
            problems.append(
                f"config key {key} is {t}, longer than frames.min_frames={frames.min_frames} (the shortest video kept); "
                f"expected at most {frames.min_frames}: lower it or raise frames.min_frames"
            )
    for name, section in (config.get("evaluations") or {}).items():
        ev = attempt(lambda: from_dict(EvalConfig, section, f"evaluations.{name}"))
        problems += _eval_problems(name, ev, model, dyn.objective.shortcut if dyn else True, frames.min_frames) if ev else []

    splits = attempt(lambda: from_dict(SplitsConfig, config.get("splits"), "splits")) or SplitsConfig()
    for key in ("val", "test"):
        if getattr(splits, key) <= 0:
            problems.append(f"config key splits.{key} is {getattr(splits, key)}; expected > 0 ({key} needs at least one video)")
    sources = config.get("sources", [])
    source_lines = sources_problems(sources)
    problems += source_lines
    if sources and not source_lines and all("url" not in s for s in sources):
        videos = all_video_specs(sources, {})
        attempt(lambda: assign_splits(sorted(videos), splits.val, splits.test, splits.seed, pinned_splits(sources, videos)))
    return problems


def _eval_problems(name: str, ev, model, shortcut: bool, min_frames: int) -> list[str]:
    """Samplers the dynamics model cannot run (or was not trained for: step sizes above 1/k_max
    without shortcut forcing), and windows longer than the shortest video."""
    problems = []
    for i, spec in enumerate(ev.samplers if model is not None else []):
        try:
            d = spec.step_size(model.k_max)
        except PipelineError as e:
            problems.append(f"config key evaluations.{name}.samplers[{i}] ({spec.name}): {e}")
            continue
        if d > 1.0 / model.k_max and not shortcut:
            problems.append(
                f"config key evaluations.{name}.samplers[{i}] ({spec.name}): shortcut sampling with {spec.steps} steps "
                f"takes steps of 1/{spec.steps}, which only dynamics.objective.shortcut: true trains (the model's own "
                f"step is 1/{model.k_max}); use kind euler, {model.k_max} steps, or shortcut: true"
            )
    if ev.span > min_frames:
        problems.append(
            f"config key evaluations.{name}: context {ev.context} + horizon {ev.horizon} = {ev.span} frames, "
            f"longer than frames.min_frames={min_frames} (the shortest video kept); expected at most {min_frames}"
        )
    return problems


def config_problems(config: dict, schema_path: str | Path) -> list[str]:
    """Every problem of `config`, one line each; [] when it is fine. Stage checks run only on a
    config that passes the schema (they assume its types)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = schema_problems(config, schema)
    if problems:
        return problems
    return _stage_problems(config)


def check_yaml(path: str | Path) -> None:
    """Exit with one line giving the line and column of a YAML syntax error in `path` (Snakemake's
    own message names neither); a missing file is left to Snakemake."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        opened = e.context_mark if e.problem_mark and e.context_mark and e.context else None
        also = f" ({e.context} opened at line {opened.line + 1})" if opened else ""
        raise SystemExit(f"config error: {path}{where}: {e.problem or e.context}{also}; fix the YAML syntax there") from None


def check(config: dict, schema_path: str | Path) -> None:
    """Exit with every problem on its own line (no traceback) if the config has any."""
    problems = config_problems(config, schema_path)
    if problems:
        raise SystemExit("\n".join(f"config error: {p}" for p in problems))
