"""benchmarks/bench_attribution.py counts the time inside the hooks a context adds, and only that."""

from __future__ import annotations

import importlib.util
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("bench_attribution", ROOT / "benchmarks" / "bench_attribution.py")
ba = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ba)


def sleeper(seconds):
    def hook(*_):
        time.sleep(seconds)
    return hook


def test_the_hooks_a_context_adds_are_timed_and_those_already_there_cancel():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[0].register_forward_hook(sleeper(0.1))  # the model's own hook: in both measurements

    @contextmanager
    def steer():  # what attach_steering does: a pre-hook on the root, forward hooks on sites
        handles = [model.register_forward_pre_hook(sleeper(0.01)), model[1].register_forward_hook(sleeper(0.03))]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    spans = ba.added_hooks(model, steer)
    assert spans == {model: (True, False), model[1]: (False, True)}
    assert not model._forward_pre_hooks and not model[1]._forward_hooks  # the context was left
    x = torch.randn(2, 4)
    extra = ba.hook_seconds(spans, steer, lambda: model(x), repeats=3)
    assert 0.04 <= extra < 0.09, extra  # the two added hooks (10 + 30 ms), not the model's own 100 ms
    spans[model[0]] = (False, True)  # timing around the model's own hook: it cancels against the zero point
    assert 0.04 <= ba.hook_seconds(spans, steer, lambda: model(x), repeats=3) < 0.09
    for m in model.modules():  # no timing hook is left behind
        assert len(m._forward_hooks) == (1 if m is model[0] else 0) and not m._forward_pre_hooks


def test_time_inside_layers():
    layer = nn.Linear(4, 4)
    layer.register_forward_hook(sleeper(0.02))  # runs inside the timed span (after the forward, before 'end')
    total = [0.0]
    with ba.timed_layers([layer], total):
        layer(torch.randn(1, 4))
        layer(torch.randn(1, 4))
    assert 0.04 <= total[0] < 0.09
    assert len(layer._forward_hooks) == 1 and not layer._forward_pre_hooks
