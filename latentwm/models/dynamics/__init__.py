"""The dynamics networks: `network(cfg)` builds the one `cfg.arch` names.

    parts        the helpers both networks share (noise-level features, the denoised guess,
                 step and action indices, the latent-shape check)
    transformer  DreamerV4's space/time transformer over patches (the GPU size's network)
    conv         the residual conv network with FiLM conditioning (the CPU size's)
"""

from __future__ import annotations

from torch import nn

from latentwm.config.dynamics import DynamicsConfig
from latentwm.models.dynamics.conv import ConvDynamics
from latentwm.models.dynamics.transformer import Dynamics


def network(cfg: DynamicsConfig) -> nn.Module:
    """The dynamics network `cfg.arch` names: the transformer or the conv network."""
    return ConvDynamics(cfg) if cfg.arch == "conv" else Dynamics(cfg)


network.config_class = DynamicsConfig  # what latentwm.models.checkpoint builds a "dynamics" model from
