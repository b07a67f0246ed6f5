"""Layer 1, the numerics: from a problem and options to a :class:`Solution`.

Data flow, one module per arrow (no autograd.Function and no nn.Module here):

    problem.py (checks func, y0, t) + config.py (method → tableau, options → a frozen config)
    → tableaux.py (Butcher coefficients as data) → runge_kutta.py (one stepper; newton.py for
    the implicit stages; multistep.py: the Adams methods' one stepper, on a fixed grid)
    → controllers.py (step-size controllers, fixed grids included)
    → integrate.py (ONE loop; outputs.py and interpolation.py give the states at the output
    times, events.py finds event times, stiffness.py watches explicit steps) → solution.py.
    scipy_solver.py: ``method="scipy_solver"`` hands the whole solve to scipy's solve_ivp.

Nothing in this package imports from the layers above it (gradients, models, data, training).
"""
