"""Layer 3, models built on a solve: vector fields, ODE blocks (plain and augmented), traces and
normalizing flows (discrete and continuous), regularised dynamics, and latent ODEs.

Every model differentiates its solve through the one gradient switch of
:mod:`nodelib.gradients` (``adjoint=False/True`` or a strategy name).
"""
