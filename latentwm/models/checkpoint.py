"""The one place that saves, loads and rebuilds models.

A checkpoint is a plain dict loadable with `torch.load(weights_only=True)`:
    kind          "tokenizer" | "dynamics" | "lam" | "refiner": which module builds the model
    model_config  plain dict of that module's Config dataclass
    model         state_dict
    optimizer, scheduler, step, sampler, rng   (training state, for resuming)
    extra         small plain dict (e.g. latent stats, metrics)
Every later rule builds its model through `build_model`, never by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentwm.config.fields import from_dict
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.models.dynamics import network
from latentwm.models.lam import Lam
from latentwm.models.refiner import Refiner
from latentwm.models.tokenizer import Tokenizer

# kind -> builder (a class, or dynamics.network), which takes its Config: the builder's `config_class`
MODELS = {"tokenizer": Tokenizer, "dynamics": network, "lam": Lam, "refiner": Refiner}


def _model_class(kind: str):
    if kind not in MODELS:
        raise PipelineError(f"checkpoint kind {kind!r} is unknown; expected one of {sorted(MODELS)}")
    return MODELS[kind]


def save(path: str | Path, state: dict[str, Any], then: str = "") -> None:
    """Write atomically: a killed job leaves either the old file or the new one, never half.

    A failed write (disk full, read-only, permission) removes its temp file, keeps the old file
    and raises one line naming `path`, with `then` (e.g. where training resumes) appended.
    """
    def fill(tmp: Path) -> None:
        # through a Python file: a failed write is an OSError with its errno, where torch.save(path)
        # gives only "unexpected pos" from its C++ writer
        with open(tmp, "wb") as f:
            torch.save(state, f)

    files.write(path, fill, then)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"checkpoint {path} does not exist; run the rule that produces it first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, foreign, or pickled code that weights_only refuses to run
        if "weights only load failed" in str(e).lower():  # torch's hint (load it unsafely) must not be repeated
            raise PipelineError(f"checkpoint {path} holds pickled objects that could run code when loaded, so it is not "
                                "loaded; this pipeline's checkpoints hold tensors and plain data only: delete it and rerun "
                                "the rule that writes it") from None
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise PipelineError(f"checkpoint {path} cannot be read ({type(e).__name__}: {first}); delete it and rerun") from e


def model_state(kind: str, model: torch.nn.Module, model_config: dict, **training) -> dict[str, Any]:
    """The dict `save` writes: model plus whatever training state is given (optimizer=..., step=...)."""
    model = getattr(model, "module", model)  # unwrap DDP / compile
    model = getattr(model, "_orig_mod", model)
    return {"kind": kind, "model_config": dict(model_config), "model": model.state_dict(), **training}


def build_model(ckpt: dict[str, Any] | str | Path, device: str | torch.device = "cpu", kind: str | None = None):
    """Rebuild the model a checkpoint describes, load its weights, move to `device`, eval mode."""
    if not isinstance(ckpt, dict):
        ckpt = load(ckpt)
    if kind is not None and ckpt.get("kind") != kind:
        raise PipelineError(f"checkpoint holds a {ckpt.get('kind')!r} model, expected {kind!r}")
    cls = _model_class(ckpt["kind"])
    # a field added since the checkpoint was saved keeps the meaning it had then (`before`)
    stored = {**getattr(cls.config_class, "before", {}), **ckpt["model_config"]}
    model = cls(from_dict(cls.config_class, stored, ckpt["kind"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
