"""The SDE tests step small tensors thousands of times: one thread is faster for them (on a
shared 2-core machine a second thread made elementwise kernels 300x slower, measured), so
each test runs with one and the setting is restored after it."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
