"""Every hardening probe (tests/serve/probe_bodies.py, probe_clients.py, probe_hostile.py, probe_files.py) as
a regression test against a real `torch2ort serve`.

One server process per module, started through the CLI with a 2 s read timeout; each probe sends
real HTTP (or runs the CLI) and names what went wrong, if anything.
"""

from __future__ import annotations

import pytest

from serve.probes import families

FAMILIES = families()
SLOW = {"16x60mb-json-memory-health"}  # ~1 GB sent over loopback: about 10 s
# Probes that time the server (health < 1 s, 2 s read timeouts) or sample its memory: alone on the machine.
SERIAL = {"large requests (5)", "slow clients (6)", "big text (27.3)", "intake (27.8)", "encoded files (26)"}


def _marks(family: str, name: str) -> list:
    return [mark for mark, on in ((pytest.mark.slow, name in SLOW), (pytest.mark.serial, family in SERIAL)) if on]


CASES = [pytest.param(family, name, id=f"{family.split(' (')[0]}:{name}", marks=_marks(family, name))
         for family, probes in FAMILIES.items() for name in probes]


@pytest.mark.parametrize("family, name", CASES)
def test_probe(serve_process, family, name):
    outcome = FAMILIES[family][name](serve_process)
    assert outcome is None, outcome
