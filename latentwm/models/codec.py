"""The tokenizer with the normalisation of the latents it made: frames <-> normalised latents.

The one object every stage uses to cross between frames and latents (the pixel loss in training,
the rollout evaluation, steering). `Codec.load` builds it from a tokenizer checkpoint and the
latents' stats, after `check_made`: the one check that a tokenizer is the one that made a set of
latents (its file hash is their tokenizer_hash), with the one message when it is not.
"""

from __future__ import annotations

import torch

from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.data.windows import Normalisation
from latentwm.models import checkpoint


def check_made(tokenizer_path, tokenizer_hash: str | None, what: str) -> str:
    """The tokenizer's file hash when it made `what` (whose tokenizer_hash is given); else one line."""
    made = files.file_hash(tokenizer_path)
    if made != tokenizer_hash:
        raise PipelineError(f"tokenizer {tokenizer_path} did not make {what} (their tokenizer_hash is {tokenizer_hash!r}, "
                            f"this one's {made!r}): pass the tokenizer that made them, or rerun encode_latents and what "
                            "follows (snakemake --forcerun encode_latents)")
    return made


class Codec:
    """The tokenizer plus the latent normalisation: frames <-> normalised latents, in batches."""

    def __init__(self, tokenizer, mean, std, device, batch: int = 64):
        self.tok, self.device, self.batch = tokenizer, device, batch
        self.norm = Normalisation(mean, std)

    @classmethod
    def load(cls, tokenizer_path, stats: dict, device="cpu", what: str = "the latents") -> Codec:
        """The tokenizer at `tokenizer_path`, frozen, with the normalisation of `stats` (a stats.json's
        dict, or a dynamics checkpoint's "stats"), once `check_made` says it made those latents."""
        check_made(tokenizer_path, stats["tokenizer_hash"], what)
        tok = checkpoint.build_model(tokenizer_path, device, kind="tokenizer").requires_grad_(False)
        return cls(tok, stats["mean"], stats["std"], device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, T, C, h, w) -> frames (B, T, 3, H, W) clamped to [0, 1], on CPU."""
        flat = self.norm.invert(z.flatten(0, 1).to(self.device))
        out = torch.cat([self.tok.decode(flat[i : i + self.batch]).float().cpu() for i in range(0, len(flat), self.batch)])
        return out.clamp(0, 1).view(*z.shape[:2], *out.shape[1:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frames float (B, T, 3, H, W) in [0, 1] -> normalised latents (B, T, C, h, w), on CPU."""
        flat = x.flatten(0, 1).to(self.device)
        z = torch.cat([self.tok.encode(flat[i : i + self.batch]).float() for i in range(0, len(flat), self.batch)])
        return self.norm.apply(z).cpu().view(*x.shape[:2], *z.shape[1:])

    def pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (M, C, h, w) -> frames (M, 3, H, W) in about [0, 1], unclamped, on z's device:
        the pixel loss's decoder (gradients flow through it to the latents, not into the frozen tokenizer)."""
        if next(self.tok.parameters()).device != z.device:
            self.tok.to(z.device)
        return self.tok.decode(self.norm.invert(z))
