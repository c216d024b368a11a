"""Write the example's small 12-lead record (synthetic beats, 2 s at 250 Hz) as WFDB (record.hea/.dat) and .mat.

Run from this folder: ``python make_record.py``. Needs numpy, scipy and wfdb; the files are committed.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.io import savemat

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
RATE, SECONDS = 250, 2.0


def beats() -> np.ndarray:
    """[12, samples] in mV: a P-QRS-T shape every 0.8 s, scaled and signed per lead, with a little noise."""
    t = np.arange(int(RATE * SECONDS)) / RATE
    phase = (t % 0.8)
    wave = sum(a * np.exp(-((phase - c) / w) ** 2) for a, c, w in
               [(0.15, 0.10, 0.025), (-0.1, 0.20, 0.01), (1.0, 0.22, 0.012), (-0.2, 0.24, 0.01), (0.3, 0.45, 0.04)])
    gains = np.array([0.8, 1.0, 0.4, -0.9, 0.3, 0.7, -0.6, 0.5, 0.9, 1.2, 1.1, 0.9])[:, None]
    return gains * wave + 0.01 * np.random.default_rng(0).standard_normal((12, t.size))


if __name__ == "__main__":
    import wfdb

    signal = beats()
    with warnings.catch_warnings():  # wfdb's pandas deprecation warnings
        warnings.simplefilter("ignore")
        wfdb.wrsamp("record", fs=RATE, units=["mV"] * 12, sig_name=LEADS, p_signal=signal.T, fmt=["16"] * 12)
    savemat("record.mat", {"val": np.round(signal * 1000).astype(np.int16)}, do_compression=True)  # µV, like PhysioNet
