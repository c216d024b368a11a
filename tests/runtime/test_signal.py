"""load_signal and the signal steps: real .npy, .csv, .mat and WFDB files, lead order, resampling, crop/pad, z-score."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from torch2ort.errors import PredictInputError
from torch2ort.runtime.processors import Context, run_preprocess
from torch2ort.runtime.processors.signal import crop_pad, load_signal, standardize

LEADS = ["I", "II", "III"]


def _ecg(n: int = 1000) -> np.ndarray:
    t = np.arange(n) / 500
    return np.stack([np.sin(2 * np.pi * (k + 1) * t) * (k + 1) for k in range(3)]).astype(np.float64)


def _write(tmp_path, fmt: str) -> str:
    data = _ecg()
    if fmt == "npy":
        np.save(tmp_path / "r.npy", data)
        return str(tmp_path / "r.npy")
    if fmt == "csv":
        np.savetxt(tmp_path / "r.csv", data.T, delimiter=",", header=",".join(LEADS), comments="")
        return str(tmp_path / "r.csv")
    if fmt == "mat":
        from scipy.io import savemat

        savemat(tmp_path / "r.mat", {"val": data})
        return str(tmp_path / "r.mat")
    with warnings.catch_warnings():  # wfdb's own pandas deprecation warnings (at import too)
        warnings.simplefilter("ignore")
        wfdb = pytest.importorskip("wfdb")
        wfdb.wrsamp("r", fs=500, units=["mV"] * 3, sig_name=LEADS, p_signal=data.T, fmt=["16"] * 3,
                    write_dir=str(tmp_path))
    return str(tmp_path / "r.hea")


@pytest.mark.parametrize("fmt", ["npy", "csv", "mat", "wfdb"])
def test_formats_read_the_same_signal(tmp_path, fmt):
    got = load_signal(_write(tmp_path, fmt), None)
    assert got.shape == (3, 1000) and got.dtype == np.float32
    np.testing.assert_allclose(got, _ecg(), atol=2e-3)  # WFDB stores 16-bit samples


def test_lead_names_order_and_resampling(tmp_path):
    ctx = Context(tmp_path)
    got = load_signal(_write(tmp_path, "wfdb"), ctx, leads=["III", "I"], sample_rate=250)
    assert got.shape == (2, 500) and ctx.meta["sample_rate"] == 250
    np.testing.assert_allclose(got[1], _ecg()[0, ::2], atol=0.05)
    by_index = load_signal(_write(tmp_path, "mat"), None, leads=[2, 0])
    np.testing.assert_allclose(by_index, _ecg()[[2, 0]], atol=1e-6)
    with pytest.raises(PredictInputError, match="lead 'aVR' is not in the signal; its leads: I, II, III"):
        load_signal(_write(tmp_path, "csv"), None, leads=["aVR"])


def test_crop_pad_and_standardize_keep_flat_leads_finite():
    x = np.arange(10, dtype=np.float32)[None].repeat(2, 0)
    assert crop_pad(x, None, 4, where="center")[0].tolist() == [3, 4, 5, 6]
    assert crop_pad(x, None, 12).shape == (2, 12)
    z = standardize(np.stack([np.arange(10.0), np.full(10, 3.0)]), None)
    assert np.isfinite(z).all() and abs(z[0].std() - 1) < 1e-6 and not z[1].any()


def test_pipeline_and_batch(tmp_path):
    steps = [{"op": "load_signal", "input_rate": 500}, {"op": "resample", "sample_rate": 250},
             {"op": "crop_pad", "length": 600}, {"op": "standardize"}, {"op": "add_batch"}]
    one = run_preprocess(steps, _write(tmp_path, "mat"), Context(tmp_path))
    assert one.shape == (1, 3, 600)
    both = run_preprocess(steps, [_write(tmp_path, "mat"), _write(tmp_path, "npy")], Context(tmp_path))
    assert both.shape == (2, 3, 600)


@pytest.mark.parametrize("content, suffix, message", [
    (b"", ".npy", "not a readable npy"), (b"a,b\n1,x\n", ".csv", "not a readable csv"),
    (b"junk", ".mat", "not a readable mat"), (b"x", ".edf", "unknown signal format"),
])
def test_bad_signals_are_one_line(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(PredictInputError, match=message) as info:
        load_signal(str(path), None)
    assert "\n" not in str(info.value)


def test_resampling_needs_a_known_rate(tmp_path):
    with pytest.raises(PredictInputError, match="needs the recording's rate"):
        load_signal(_write(tmp_path, "mat"), None, sample_rate=250)
    assert load_signal(_write(tmp_path, "mat"), None, sample_rate=250, input_rate=500).shape == (3, 500)


@pytest.mark.parametrize("step, listed, unlisted", [
    ({"format": "npy"}, [], ["scipy", "wfdb"]),
    ({"format": "csv", "input_rate": 500, "sample_rate": 250}, ["scipy"], ["wfdb"]),
    ({"format": "mat"}, ["scipy"], ["wfdb"]),
    ({"format": "wfdb"}, ["wfdb"], ["scipy"]),
    ({}, ["scipy", "wfdb"], []),  # by suffix: any format, so every library
])
def test_requirements_list_wfdb_and_scipy_only_for_formats_that_need_them(tmp_path, step, listed, unlisted):
    from runtime.tiny_models import vector_model
    from torch2ort.bundle.writer import pack
    from torch2ort.runtime import Bundle

    pre = [{"op": "load_signal", "layout": "leads_first", **step}, {"op": "crop_pad", "length": 4}]
    out = pack(vector_model(tmp_path / "vec.onnx"), tmp_path / "b", preprocess=pre)
    names = {line.split(">=")[0].split("==")[0] for line in (out / "requirements.txt").read_text().splitlines()}
    assert set(listed) <= names and not set(unlisted) & names
    if step.get("format") == "npy":  # the bundle that lists neither still reads its own format
        np.save(tmp_path / "r.npy", -_ecg()[:1])
        assert Bundle.load(out).predict(str(tmp_path / "r.npy"), raw=True)["y"].shape == (1, 4)


@pytest.mark.parametrize("fmt", ["npy", "csv", "mat", "wfdb"])
def test_bytes_read_the_same_signal_as_files(tmp_path, fmt):
    """The bytes of each format decode in memory to what the file decodes to; a WFDB record comes zipped."""
    import io
    import zipfile

    path = Path(_write(tmp_path, fmt))
    data = path.read_bytes()
    if fmt == "wfdb":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for member in ("r.hea", "r.dat"):
                zf.write(tmp_path / member, member)
        data = buf.getvalue()
    np.testing.assert_array_equal(load_signal(data, None), load_signal(str(path), None))


def test_a_lying_npy_header_from_bytes_is_refused_before_allocation(tmp_path):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 4)))
    lying = buf.getvalue().replace(b"(2, 4)", b"(9, 4)")
    with pytest.raises(PredictInputError, match="the header claims 288 bytes of data, the file holds 64"):
        load_signal(lying, None)
    with pytest.raises(PredictInputError, match="over the limit of 7"):
        load_signal(buf.getvalue(), None, max_values=7)
    with pytest.raises(PredictInputError, match="must be a zip or tar"):
        load_signal(buf.getvalue(), None, format="wfdb")
