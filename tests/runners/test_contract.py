"""Every runner keeps the same contract on the same small models."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.families import FAMILIES, load_family
from torch2ort.inputs import synthetic_feed
from torch2ort.runners import RUNNERS, RunnerError, runner_class
from torch2ort.runners.ort import OrtRunner
from torch2ort.runners.torch_eager import TorchRunner


def _make(kind, name, exported):
    if kind == "torch":
        return TorchRunner(load_family(name).module, FAMILIES[name].spec)
    if kind == "web":
        from torch2ort.runners.web import WebRunner

        return WebRunner(exported(name), threads=1)
    return OrtRunner(exported(name))


KINDS = [pytest.param(k, marks=pytest.mark.browser) if k == "web" else k for k in RUNNERS]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["attn_mil", "encoder"])
def test_contract(kind, name, exported):
    runner = _make(kind, name, exported)
    assert runner_class(kind) is type(runner)
    with pytest.raises(RunnerError, match="activate"):
        runner.infer({})
    with runner:
        out = runner.infer(synthetic_feed(FAMILIES[name].spec))
        assert isinstance(out, dict) and out
        assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in out.items())
        assert runner.last_seconds is not None and runner.last_seconds > 0
        with pytest.raises(RunnerError):
            runner.infer({})
    assert not runner.is_active


def test_runners_agree_on_names(exported):
    feed = synthetic_feed(FAMILIES["attn_mil"].spec)
    names = []
    for kind in RUNNERS:
        with _make(kind, "attn_mil", exported) as r:
            names.append(list(r.infer(feed)))
    assert all(n == ["bag_prob", "bag_logit", "seg_probs", "attn_weights"] for n in names)
    assert len(names) == len(RUNNERS)


def test_a_bad_infer_breaks_the_contract_loudly():
    from torch2ort.runners.base import Runner

    class Broken(Runner):
        def _infer(self, feed):
            return [np.zeros(1)]

    with Broken() as r, pytest.raises(TypeError, match="dict"):
        r.infer({})
