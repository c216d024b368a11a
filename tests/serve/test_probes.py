"""Every hardening probe (tests/serve/probes.py) as a regression test against a real `torch2ort serve`.

One server process per module, started through the CLI with a 2 s read timeout; each probe sends
real HTTP (or runs the CLI) and names what went wrong, if anything.
"""

from __future__ import annotations

import pytest

from serve.probes import FAMILIES

CASES = [(family, name) for family, probes in FAMILIES.items() for name in probes]


@pytest.mark.parametrize("family, name", CASES, ids=[f"{f.split(' (')[0]}:{n}" for f, n in CASES])
def test_probe(serve_process, family, name):
    outcome = FAMILIES[family][name](serve_process)
    assert outcome is None, outcome
