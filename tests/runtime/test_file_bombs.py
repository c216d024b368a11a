"""Small files that decode to a lot (issue 27): refused from their headers, in one line, with little memory.

Each bomb is a real file, a few KB to a few MB on disk (sparse where it is mostly zeros), that
would decode to 40-400 MB. The loaders get a low ``max_values`` so the would-be sizes stay small
here; the same check guards the default limit. Peak memory is measured in a fresh interpreter,
after its imports: the peak resident size (VmHWM, restarted through /proc/self/clear_refs) during
the call minus the resident size before it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

SRC = Path(__file__).resolve().parents[2] / "src"
GROWTH_MB = 20  # what a refused bomb may add to the peak; unbounded, they added 190-470 MB

MEASURE = """
import json, warnings
warnings.simplefilter("ignore")
import numpy as np, scipy.io, scipy.signal, soundfile, soxr, wfdb
from torch2ort.errors import PredictInputError
from torch2ort.runtime.processors.audio import load_audio
from torch2ort.runtime.processors.signal import load_signal
def status(key):
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith(key)).split()[1])  # KB
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from the resident size
before = status("VmRSS")
try:
    out = {call}
    outcome = "accepted " + str(getattr(out, "shape", ""))
except PredictInputError as exc:
    outcome = str(exc)
grew = (status("VmHWM") - before) / 1024
print(json.dumps({{"grew_mb": grew, "outcome": outcome}}))
"""


def _measure(call: str) -> tuple[float, str]:
    """Peak RSS growth (MB) of ``call`` in a fresh interpreter, and its outcome (the error line, or accepted)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to restart the peak RSS")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(MEASURE.format(call=call))], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    return result["grew_mb"], result["outcome"]


def _flac_8ch(path: Path, blocks: int = 100) -> Path:
    """8 channels at 655,350 Hz, 6.5 M frames of silence: 56 KB of FLAC, 210 MB as float32."""
    zeros = np.zeros((1 << 16, 8), np.float32)
    with sf.SoundFile(path, "w", samplerate=655_350, channels=8, format="FLAC", subtype="PCM_16") as f:
        for _ in range(blocks):
            f.write(zeros)
    return path


def _slow_wav(path: Path) -> Path:
    """50,000 samples at 1 kHz: 100 KB, 38 M samples once resampled to 768 kHz."""
    sf.write(path, np.zeros(50_000, np.float32), 1000, subtype="PCM_16")
    return path


def _mat(path: Path) -> Path:
    """12.5 M zeros (100 MB as float64), zlib-compressed to about 100 KB."""
    from scipy.io import savemat

    savemat(path, {"val": np.zeros((1, 12_500_000))}, do_compression=True)
    return path


def _mat_lying(path: Path) -> Path:
    """The same stream with its dims rewritten to 1 x 1: whosmat sees one value, zlib still inflates 100 MB."""
    honest = _mat(path.with_name("honest.mat")).read_bytes()
    inflate, deflate = zlib.decompressobj(), zlib.compressobj()
    stream, out, patched = honest[136:], [], False
    while stream:
        piece = inflate.decompress(stream, 1 << 20)
        stream = inflate.unconsumed_tail
        if not patched:  # miMATRIX tag (8), array flags (16), dims tag (8), then the dims
            piece = piece[:32] + np.array([1, 1], "<i4").tobytes() + piece[40:]
            patched = True
        out.append(deflate.compress(piece))
    out.append(deflate.flush())
    body = b"".join(out)
    path.write_bytes(honest[:128] + (15).to_bytes(4, "little") + len(body).to_bytes(4, "little") + body)
    return path


def _npy(path: Path) -> Path:
    """A [2, 12.5 M] float64 .npy, 200 MB, sparse on disk."""
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (2, 12_500_000)})
        f.truncate(f.tell() + 2 * 12_500_000 * 8)
    return path


def _wfdb_long(path: Path) -> Path:
    """A WFDB record of 2 leads x 10 M samples: a 40 MB sparse .dat, 160 MB as float64."""
    lines = ["big 2 500 10000000"] + [f"big.dat 16 200/mV 16 0 0 0 0 {lead}" for lead in ("I", "II")]
    (path.parent / "big.hea").write_text("\n".join(lines) + "\n")
    with (path.parent / "big.dat").open("wb") as f:
        f.truncate(2 * 2 * 10_000_000)
    return path.parent / "big.hea"


def _wfdb_fs1(path: Path) -> Path:
    """2 leads x 1,000 samples at fs=1: 40 M values once resampled to 20 kHz."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import wfdb

        wfdb.wrsamp("slow", fs=1, units=["mV"] * 2, sig_name=["I", "II"], p_signal=np.zeros((1000, 2)),
                    fmt=["16"] * 2, write_dir=str(path.parent))
    return path.parent / "slow.hea"


def _csv(path: Path) -> Path:
    """10 M values (5,000 rows x 2,000 columns), 20 MB of text: a CSV has no compression, only 2 bytes a value."""
    row = ",".join(["0"] * 2000) + "\n"
    with path.open("w") as f:
        for _ in range(5000):
            f.write(row)
    return path


BOMBS = [
    (_flac_8ch, "bomb.flac", "load_audio({p!r}, None, max_values=1_000_000)",
     "holds 6,553,600 values, over the limit of 1,000,000"),
    (_slow_wav, "slow.wav", "load_audio({p!r}, None, sample_rate=768_000, max_values=10_000_000)",
     "would hold 38,400,000 values resampled from 1000 Hz to 768000 Hz"),
    (_mat, "bomb.mat", "load_signal({p!r}, None, max_values=1_000_000)",
     r"bomb.mat \(val\) holds 12,500,000 values, over the limit of 1,000,000"),
    (_mat_lying, "lying.mat", "load_signal({p!r}, None, max_values=1_000_000)",
     "a compressed variable inflates past 65,552 bytes"),
    (_npy, "bomb.npy", "load_signal({p!r}, None, max_values=1_000_000)",
     "bomb.npy holds 25,000,000 values, over the limit"),
    (_wfdb_long, "big.hea", "load_signal({p!r}, None, max_values=1_000_000)",
     "big.hea holds 20,000,000 values, over the limit"),
    (_wfdb_fs1, "slow.hea", "load_signal({p!r}, None, sample_rate=20_000, max_values=1_000_000)",
     "would hold 40,000,000 values resampled from 1 Hz to 20000 Hz"),
    (_csv, "bomb.csv", "load_signal({p!r}, None, max_values=1_000_000)",
     "bomb.csv holds more than 1,000,000 values"),
]


@pytest.mark.parametrize("make, name, call, message", BOMBS, ids=[b[1] for b in BOMBS])
def test_bombs_are_refused_from_the_header(tmp_path, make, name, call, message):
    path = make(tmp_path / name)
    assert path.stat().st_blocks * 512 < (21_000_000 if name.endswith(".csv") else 5_000_000)  # small on disk
    grew, outcome = _measure(call.format(p=str(path)))
    assert not outcome.startswith("accepted") and "\n" not in outcome
    assert re.search(message, outcome), outcome
    assert grew < GROWTH_MB, f"{name}: peak RSS grew {grew:.0f} MB before the refusal"


def test_many_channels_mixed_to_mono_hold_only_the_mono_samples(tmp_path):
    """8 x 6.5 M frames decode block by block into one mono channel: 26 MB held, not 210 MB."""
    path = _flac_8ch(tmp_path / "wide.flac")
    grew, outcome = _measure(f"load_audio({str(path)!r}, None, sample_rate=16000, max_values=10_000_000)")
    assert outcome.startswith("accepted (1600"), outcome
    assert grew < 100, f"peak RSS grew {grew:.0f} MB"  # measured 42 (26 of them the mono wave); 250 before


def test_too_many_channels_and_rates_are_refused(tmp_path):
    from torch2ort.errors import PredictInputError
    from torch2ort.runtime.processors.audio import load_audio

    path = tmp_path / "wide.wav"
    sf.write(path, np.zeros((10, 65), np.float32), 8000)
    with pytest.raises(PredictInputError, match="declares 65 channels; the limit is 64"):
        load_audio(str(path), None)
    with pytest.raises(PredictInputError, match="resampled from 8000 Hz to 16000 Hz"):
        load_audio(np.zeros(6000, np.float32), None, input_rate=8000, max_values=10_000)
