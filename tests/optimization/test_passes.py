"""Each pass produces a model ONNX Runtime loads and runs, and reports what it did."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fixtures.families import FAMILIES
from torch2ort.errors import UsageError
from torch2ort.export.graph import op_counts
from torch2ort.inputs import synthetic_cases, synthetic_feed
from torch2ort.optimization.passes import PASSES, PassContext, PassError, parse_chain, pass_class
from torch2ort.optimization.passes.base import has_vnni, pick_reduce_range, unshare_weights
from torch2ort.optimization.passes.int8_dynamic import Int8Dynamic, quantisable_nodes
from torch2ort.optimization.passes.transformer import looks_like_transformer

# pass name -> the fixture family it is meant for
TARGETS = {"graph": "mobilenet", "slim": "mobilenet", "transformer": "encoder", "fp16": "mobilenet",
           "int8-dynamic": "encoder", "int8-static": "ecg_resnet1d",
           "lift1d": "ecg_resnet1d",
           "pack-projections": "encoder",  # its Q/K/V; tests/optimization/test_pack.py for decoders
           "subpixel": "mobilenet"}  # no ConvTranspose there: left as is; tests/optimization/test_subpixel.py rewrites


def _ctx(tmp_path, family: str) -> PassContext:
    return PassContext(tmp_path, [c.feed for c in synthetic_cases(FAMILIES[family].spec, 4, seed=50)])


def _run(path, family: str) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = synthetic_feed(FAMILIES[family].spec, seed=7)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def test_every_registered_pass_has_a_target():
    assert set(TARGETS) == set(PASSES)


@pytest.mark.parametrize("name", list(TARGETS))
def test_pass_output_loads_and_runs(name, exported, tmp_path):
    family = TARGETS[name]
    src = exported(family)
    result = pass_class(name)()(src, tmp_path / "out.onnx", _ctx(tmp_path, family))
    onnx.checker.check_model(str(result.model))
    before, after = _run(src, family), _run(result.model, family)
    assert before.keys() == after.keys()
    for k in before:
        assert after[k].shape == before[k].shape and after[k].dtype == before[k].dtype
        assert np.isfinite(after[k]).all()
    assert result.details["nodes_after"] > 0
    if name in ("fp16", "int8-dynamic", "int8-static"):
        assert result.changed


def test_quantisers_add_their_ops(exported, tmp_path):
    dyn = Int8Dynamic(per_channel=True)(exported("encoder"), tmp_path / "d.onnx", _ctx(tmp_path, "encoder"))
    assert "DynamicQuantizeLinear" in op_counts(dyn.model) and dyn.details["quantised"] > 0
    static = pass_class("int8-static")(method="entropy")(exported("ecg_resnet1d"), tmp_path / "s.onnx",
                                                         _ctx(tmp_path, "ecg_resnet1d"))
    counts = op_counts(static.model)
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0
    assert static.details["method"] == "entropy" and static.details["format"] == "QDQ"


def test_transformer_fusion_fuses_attention_in_dynamo_graphs(exported, tmp_path):
    """onnxscript's ORT fusions match the dynamo export; ORT's own optimizer does not, and says so."""
    src = exported("encoder")
    assert looks_like_transformer(op_counts(src))
    res = pass_class("transformer")()(src, tmp_path / "f.onnx", _ctx(tmp_path, "encoder"))
    assert res.details["engine"] == "onnxscript" and res.notes == []
    fused = res.details["fused_ops"]
    assert fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0) >= 2 and fused["SkipLayerNormalization"]
    ort_only = pass_class("transformer")(engine="ort")(src, tmp_path / "o.onnx", _ctx(tmp_path, "encoder"))
    assert not {"Attention", "MultiHeadAttention"} & set(ort_only.details["fused_ops"])
    assert any("Attention" in n and "fusion did not happen" in n for n in ort_only.notes)
    with pytest.raises(PassError, match="choose from auto, onnxscript, ort"):
        pass_class("transformer")(engine="tensorrt")


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory):
    """A tiny BertModel from a transformers config, exported by dynamo: the graph onnxscript packs into Attention."""
    pytest.importorskip("transformers")
    from fixtures.hf import bert_dir
    from torch2ort.export import export_onnx
    from torch2ort.sources import ModelRequest, load_model

    tmp = tmp_path_factory.mktemp("bert")
    loaded = load_model(ModelRequest(f"hf:{bert_dir(tmp / 'bert', num_labels=2)}"))
    export_onnx(loaded, loaded.hints.spec, tmp / "bert.onnx")
    return tmp / "bert.onnx", loaded.hints.spec


def test_mha_fusion_leaves_every_projection_to_int8(bert_onnx, tmp_path):
    """attention=mha stops at MultiHeadAttention: Q/K/V stay MatMuls, and int8 after it quantises them all."""
    src, spec = bert_onnx
    ctx = PassContext(tmp_path, [c.feed for c in synthetic_cases(spec, 2, seed=50)])
    packed = pass_class("transformer")()(src, tmp_path / "p.onnx", ctx)
    mha = pass_class("transformer")(attention="mha")(src, tmp_path / "m.onnx", ctx)
    assert packed.details["fused_ops"].get("Attention", 0) >= 1
    assert mha.details["fused_ops"].get("MultiHeadAttention", 0) >= 1 and "Attention" not in mha.details["fused_ops"]
    assert mha.details["attention"] == "mha" and mha.details["fused_ops"]["SkipLayerNormalization"]
    feed = synthetic_feed(spec, seed=7)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feed)
    got = ort.InferenceSession(str(mha.model), providers=["CPUExecutionProvider"]).run(None, feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
    on_mha = Int8Dynamic(per_channel=True)(mha.model, tmp_path / "mq.onnx", ctx).details["quantised"]
    unfused = Int8Dynamic(per_channel=True)(src, tmp_path / "uq.onnx", ctx).details["quantised"]
    assert on_mha == unfused  # every projection MatMul is quantised after the mha fusion
    in_float = on_mha - len(quantisable_nodes(packed.model, ["MatMul", "Gemm"]))
    assert in_float == 3 * packed.details["fused_ops"]["Attention"]  # Q, K and V of each packed Attention
    assert pass_class("transformer")(attention="mha").label == "transformer[attention=mha]"
    with pytest.raises(PassError, match="choose from packed, mha"):
        pass_class("transformer")(attention="flash")


def test_unfused_skip_norm_keeps_layer_norm_apart_at_load(bert_onnx, tmp_path):
    """skip_norm=unfused: no SkipLayerNormalization in the file, and none after ORT's own load-time fusions."""
    src, spec = bert_onnx
    ctx = PassContext(tmp_path, [c.feed for c in synthetic_cases(spec, 2, seed=50)])
    res = pass_class("transformer")(skip_norm="unfused")(src, tmp_path / "u.onnx", ctx)
    counts = op_counts(res.model)
    assert "SkipLayerNormalization" not in counts and counts["Sum"] == res.details["residual_sums"] > 0
    assert res.details["fused_ops"].get("Attention", 0) >= 1 and res.notes == []
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "as-loaded.onnx")
    session = ort.InferenceSession(str(res.model), opts, providers=["CPUExecutionProvider"])
    assert "SkipLayerNormalization" not in op_counts(tmp_path / "as-loaded.onnx")
    plain = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    feed = synthetic_feed(spec, seed=7)
    for a, b in zip(session.run(None, feed), plain.run(None, feed)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
    with pytest.raises(PassError, match="choose from fused, unfused"):
        pass_class("transformer")(skip_norm="never")


def test_exclude_last_keeps_nodes_in_float(exported, tmp_path):
    res = Int8Dynamic(exclude_last=2)(exported("encoder"), tmp_path / "x.onnx", _ctx(tmp_path, "encoder"))
    assert len(res.details["excluded"]) == 2
    assert res.details["quantised"] == res.details["quantisable"] - 2


def test_exclude_outliers_keeps_the_spikiest_inputs_in_float(exported, tmp_path):
    res = Int8Dynamic(per_channel=True, exclude_outliers=3)(exported("encoder"), tmp_path / "o.onnx",
                                                          _ctx(tmp_path, "encoder"))
    scores = res.details["outlier_scores"]
    assert len(res.details["excluded"]) == 3 and set(scores) == set(res.details["excluded"])
    assert all(v > 1 for v in scores.values())  # max|x| / mean|x| is above 1 for any non-constant input
    assert res.details["quantised"] == res.details["quantisable"] - 3


def test_shared_weights_are_unshared_before_quantisation(exported):
    # The encoder's two cloned layers start equal, so the exporter stores their out_proj weight once.
    model = onnx.load(str(exported("encoder")))
    assert unshare_weights(model) >= 1
    assert unshare_weights(model) == 0


def test_fp16_retries_with_a_block_list_when_fp16_goes_wrong(tmp_path):
    # y = (x·1e5)·1e-5. In fp16 the weight 1e5 is out of range (the converter clamps it to 65504), so y
    # drifts by 35%; the probe finds x·1e5 (3e5) out of range and the retry keeps both Muls in fp32.
    # (ORT's CPU provider runs small fp16 islands through casts, so a drift is what shows up here;
    # on a GPU the same graph overflows to Inf, which the same check catches.)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])
    k = [onnx.numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", 1e5), ("b", 1e-5))]
    nodes = [onnx.helper.make_node("Mul", ["x", "a"], ["h"], name="up"),
             onnx.helper.make_node("Mul", ["h", "b"], ["y"], name="down")]
    graph = onnx.helper.make_graph(nodes, "g", [x], [y], k)
    src = tmp_path / "m.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8), src)
    ctx = PassContext(tmp_path, [{"x": np.full((2, 4), 3.0, np.float32)}])
    res = pass_class("fp16")()(src, tmp_path / "h.onnx", ctx)
    first, retry = res.details["attempts"]
    assert "drifted" in first["problem"] or "overflowed" in first["problem"]
    assert {"up", "down"} <= set(retry["node_block_list"]) and retry["problem"] is None
    assert any("retried" in n for n in res.notes)
    out = ort.InferenceSession(str(res.model)).run(None, ctx.calibration[0])[0]
    np.testing.assert_allclose(out, 3.0, rtol=1e-2)


def test_reduce_range_follows_vnni():
    assert pick_reduce_range("auto", {"avx2", "avx512_vnni"})[0] is False
    assert pick_reduce_range("auto", {"avx2"})[0] is True
    assert pick_reduce_range("on", set())[0] is True
    assert has_vnni({"asimddp"})
    with pytest.raises(PassError):
        pick_reduce_range("sometimes", set())


def test_unknown_pass_and_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="valid: .*int8-dynamic"):
        parse_chain("graph,int4")
    with pytest.raises(UsageError, match="'all'"):
        pass_class("graph")(level="all")
    with pytest.raises(UsageError, match="entropy"):
        pass_class("int8-static")(method="kl")


def test_passes_leave_the_working_directory_clean(tmp_path, monkeypatch):
    """A tiny BERT's dynamo graph defeats ORT's symbolic shape inference, which then saves
    sym_shape_infer_temp.onnx and a .data file into the cwd; passes must run in their workdir."""
    pytest.importorskip("transformers")
    from fixtures.hf import bert_dir
    from torch2ort.export import export_onnx
    from torch2ort.inputs import synthetic_feed
    from torch2ort.optimization.passes.int8_static import Int8Static
    from torch2ort.sources import ModelRequest, load_model

    loaded = load_model(ModelRequest(f"hf:{bert_dir(tmp_path / 'bert', num_labels=2)}"))
    src = tmp_path / "bert.onnx"
    export_onnx(loaded, loaded.hints.spec, src)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    work = tmp_path / "work"
    work.mkdir()
    ctx = PassContext(workdir=work, calibration=[synthetic_feed(loaded.hints.spec, seed=s) for s in range(2)])
    result = Int8Static()(src, tmp_path / "int8.onnx", ctx)
    assert result.model.is_file()
    assert sorted(p.name for p in cwd.iterdir()) == []
