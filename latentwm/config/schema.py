"""The JSON schema of config.yaml: the sections' schemas (SECTIONS), with `sources` and `evaluations`
around them; `python -m latentwm.config` prints it."""

from __future__ import annotations

from latentwm.config.data import (
    KINDS,
    SPLITS,
    DownloadConfig,
    FramesConfig,
    GeneratorConfig,
    LatentsConfig,
    SplitsConfig,
)
from latentwm.config.dynamics import DynamicsStage
from latentwm.config.evaluation import EvalConfig
from latentwm.config.fields import SAFE_NAME, section_schema
from latentwm.config.lam import LamStage
from latentwm.config.refiner import RefinerStage
from latentwm.config.tokenizer import TokenizerStage


def schema() -> dict:
    """The JSON schema of config.yaml."""
    sources = {
        "description": "Videos to learn from. Each entry has an id and exactly one of generator, path, url.",
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id"],
            "properties": {
                "id": {"description": "Safe name (letters, digits, _) used in every file name of this source.",
                       "type": "string", "pattern": SAFE_NAME},
                "url": {"description": "A video, playlist or channel URL, resolved by yt-dlp (one job per video).",
                        "type": "string", "pattern": "^(https?)://"},
                "path": {"description": "A local video file; linked (or copied) into results/videos, never modified.",
                         "type": "string", "minLength": 1},
                "parts": {"description": "A path or url source: cut each of its videos in time into this many equal "
                                         "parts, each its own video ({video}_part00, ...), so one long recording fills "
                                         "train, val and test (held-out parts are unseen stretches of it). Unset: 1, or 8 "
                                         "when the sources give fewer than 3 videos (local files when every source is "
                                         "local, else the url sources' videos; not a file with an actions sidecar).",
                          "type": "integer", "minimum": 1, "maximum": 99},
                "split": {"description": "Pin every video of this source to one split (footage that must stay held out, "
                                         "or footage only to learn from); unset: the splits' fractions and seed place "
                                         "it among the unpinned videos.",
                          "type": "string", "enum": list(SPLITS)},
                "generator": section_schema(GeneratorConfig, fill=False),  # never filled in: one of three
            },
            "oneOf": [{"required": [kind]} for kind in KINDS],
        },
    }
    evaluations = {
        "description": "Named rollout evaluations on the test videos (name -> settings), each its own job and its own "
                       "results/eval/{name}/ and results/plots/{name}/. Changing one reruns only that evaluation and its "
                       "plots, never training.",
        "type": "object",
        "default": {"default": {}},
        "minProperties": 1,
        "additionalProperties": False,
        "patternProperties": {SAFE_NAME: section_schema(EvalConfig, fill=False)},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "Configuration of the latentwm pipeline, generated from latentwm/config/ by "
                       "`python -m latentwm.config` (edit that module, not this file). Every section is the slice one "
                       "stage receives as params; unknown keys are errors, so a typo never passes silently.",
        "type": "object",
        "additionalProperties": False,
        "required": ["sources"],
        "properties": {"sources": sources, **{k: section_schema(c) for k, c in SECTIONS.items()}, "evaluations": evaluations},
    }


def schema_yaml() -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # a list shared by two fields is written out twice
            return True

    return yaml.dump(schema(), Dumper=Dumper, sort_keys=False, width=120, default_flow_style=None, allow_unicode=True)



# The sections of config.yaml other than `sources` and `evaluations` (a list and a map, built
# by config.schema around GeneratorConfig and EvalConfig).
SECTIONS = {
    "download": DownloadConfig,
    "frames": FramesConfig,
    "splits": SplitsConfig,
    "tokenizer": TokenizerStage,
    "latents": LatentsConfig,
    "lam": LamStage,
    "dynamics": DynamicsStage,
    "refiner": RefinerStage,
}
