"""Shared fixtures. The unit tests mirror the package: tests/solvers, tests/gradients,
tests/models, tests/data, tests/training; tests/problems.py holds closed-form problems for all."""
import sys
from pathlib import Path

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


# tests/problems.py is imported by tests in the subfolders (pytest puts only their own folder on
# sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parent))
