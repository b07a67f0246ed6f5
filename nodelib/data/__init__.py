"""Layer 4, data: generated toy sets (toy.py), trajectories of known systems (systems.py),
target densities (densities.py), point clouds (samples.py) and latent-ODE series (series.py).

Nothing is downloaded: every set is generated from a seed on the CPU, then moved to the
requested device and dtype.
"""
