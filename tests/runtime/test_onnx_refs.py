from __future__ import annotations

import onnx
import pytest
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from torch2ort.errors import WireError
from torch2ort.runtime.onnx_refs import external_data_locations


def test_matches_onnx_own_listing(exported, tmp_path):
    model = onnx.load(str(exported("encoder")))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=256)
    reloaded = onnx.load(str(path), load_external_data=False)
    want = list(dict.fromkeys(next(e.value for e in t.external_data if e.key == "location")
                              for t in _get_all_tensors(reloaded) if uses_external_data(t)))
    assert want and external_data_locations(path.read_bytes()) == want


def test_no_external_data_and_garbage(exported):
    assert external_data_locations(exported("mobilenet").read_bytes()) == []
    with pytest.raises(WireError):
        external_data_locations(b"\x0a\xff\xff\xff")
