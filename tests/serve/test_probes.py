"""Every hardening probe (tests/serve/probe_bodies.py, probe_clients.py) as a regression test
against a real `torch2ort serve`.

One server process per module, started through the CLI with a 2 s read timeout; each probe sends
real HTTP (or runs the CLI) and names what went wrong, if anything.
"""

from __future__ import annotations

import pytest

from serve.probes import families

FAMILIES = families()
SLOW = {"16x60mb-json-memory-health"}  # ~1 GB sent over loopback: about 10 s
CASES = [pytest.param(family, name, id=f"{family.split(' (')[0]}:{name}",
                      marks=[pytest.mark.slow] if name in SLOW else [])
         for family, probes in FAMILIES.items() for name in probes]


@pytest.mark.parametrize("family, name", CASES)
def test_probe(serve_process, family, name):
    outcome = FAMILIES[family][name](serve_process)
    assert outcome is None, outcome
