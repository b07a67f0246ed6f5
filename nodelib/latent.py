"""``nodelib.latent`` moved to
nodelib.models.latent, nodelib.models.fields and nodelib.data.series in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.latent import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .data.series import SpiralData, observation_mask, spirals, union_grid
from .models.fields import MLPDynamics
from .models.latent import (
                            ELBO,
                            ODERNN,
                            GapRNN,
                            LatentODE,
                            RecognitionRNN,
                            gaussian_kl,
                            gaussian_log_likelihood,
                            reparameterize,
)

__all__ = [
                            "ELBO",
                            "ODERNN",
                            "GapRNN",
                            "LatentODE",
                            "MLPDynamics",
                            "RecognitionRNN",
                            "SpiralData",
                            "gaussian_kl",
                            "gaussian_log_likelihood",
                            "observation_mask",
                            "reparameterize",
                            "spirals",
                            "union_grid",
]
