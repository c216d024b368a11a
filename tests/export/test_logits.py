"""A decoder export's ``logits_to_keep`` input: every position by default (what verification compares), the last
ones when fed (what the runtime's prefill asks for), kept through the fusion, and said when it cannot be added."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.export.logits import INT64_MAX, KEPT_DIM, add_logits_to_keep, restore_logits_to_keep
from torch2ort.runtime.generate import LOGITS_TO_KEEP


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _prefill_feed(session, prompt_ids: list[list[int]]) -> dict[str, np.ndarray]:
    ids = np.array(prompt_ids, np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.tile(np.arange(ids.shape[1]),
                                                                                          (len(ids), 1))}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            feed[i.name] = np.zeros((len(ids), i.shape[1], 0, i.shape[3]), np.float32)
    return {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}}


def _logits(session, feed, keep=None) -> np.ndarray:
    extra = {} if keep is None else {LOGITS_TO_KEEP: np.array(keep, np.int64)}
    return session.run(["logits"], feed | extra)[0]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_every_position_by_default_and_only_the_last_when_asked(family, request):
    decoder = request.getfixturevalue(f"{family}_decoder")
    graph = onnx.load(str(decoder.onnx), load_external_data=False).graph
    logits = next(o for o in graph.output if o.name == "logits")
    assert [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim][:2] == ["batch", KEPT_DIM]
    session = _session(decoder.onnx)
    assert [i.name for i in session.get_overridable_initializers()] == [LOGITS_TO_KEEP]
    assert LOGITS_TO_KEEP not in {i.name for i in session.get_inputs()}  # nobody has to feed it
    feed = _prefill_feed(session, [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    every = _logits(session, feed)
    assert every.shape[:2] == (2, 6)
    assert np.array_equal(_logits(session, feed, 0), every)
    last, two = _logits(session, feed, 1), _logits(session, feed, 2)
    assert last.shape[:2] == (2, 1) and two.shape[:2] == (2, 2)
    np.testing.assert_allclose(last, every[:, -1:], rtol=0, atol=1e-5)
    np.testing.assert_allclose(two, every[:, -2:], rtol=0, atol=1e-5)


def test_the_runtime_prefill_computes_the_last_position_only_and_still_matches(llama_decoder, monkeypatch):
    from torch2ort.runtime import Bundle
    from torch2ort.runtime import generate as gen_module
    from torch2ort.sources.hf_decoder import reference_greedy

    real = gen_module.run_bound
    calls = []

    def spy(session, binding, arrays, values, output_names, past_names, **kwargs):
        out = real(session, binding, arrays, values, output_names, past_names, **kwargs)
        calls.append((LOGITS_TO_KEEP in values, list(binding.get_outputs()[0].shape())))
        return out

    monkeypatch.setattr(gen_module, "run_bound", spy)
    gen = Bundle.load(llama_decoder.bundle).generator()
    prompts = [gen.encode(["def fibonacci(n):"])[0], gen.encode(["ok"])[0]]
    got = gen.generate_ids(prompts, 6)
    assert calls[0] == (True, [2, 1, 257])  # the prefill: one position per row, not the 17 of the prompt
    assert all(not fed and shape == [2, 1, 257] for fed, shape in calls[1:]) and len(calls) == max(map(len, got))
    assert got == reference_greedy(llama_decoder.loaded, prompts, 6)

    calls.clear()
    batch = gen_module.DecodeBatch(gen)  # continuous batching's prefill asks for the same
    batch.join("a", prompts[0], max_new_tokens=2)
    while batch:
        batch.step()
    assert calls[0] == (True, [1, 1, 257]) and all(c == (False, [1, 1, 257]) for c in calls[1:])


def test_the_fused_graph_gets_the_input_back(llama_decoder, tmp_path):
    pytest.importorskip("onnxscript")
    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion

    fused = DecoderFusion(max_positions=256)(llama_decoder.onnx, tmp_path / "fused.onnx", PassContext(tmp_path))
    dropped = _session(fused.model).get_overridable_initializers()
    assert restore_logits_to_keep(llama_decoder.onnx, fused.model)
    assert not restore_logits_to_keep(llama_decoder.onnx, fused.model)  # once is enough
    session = _session(fused.model)
    assert [i.name for i in session.get_overridable_initializers()] == [LOGITS_TO_KEEP] and not dropped
    feed = _prefill_feed(session, [[5, 6, 7, 8]])
    np.testing.assert_allclose(_logits(session, feed, 1), _logits(session, feed)[:, -1:], rtol=0, atol=1e-5)


def _head_graph(before_head: list, head_input: str, extra_inits=()) -> onnx.ModelProto:
    """hidden [batch, sequence, 4] -> (nodes) -> MatMul with a [4, 3] weight -> logits."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    nodes = [*before_head, helper.make_node("MatMul", [head_input, "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", 3])],
        [w, *extra_inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_a_slice_a_pass_folded_to_every_position_is_wired_up_again(tmp_path):
    """What the fusion leaves when its optimiser folds the input's default: Slice(hidden, 0, end, axis 1)."""
    consts = [numpy_helper.from_array(np.array(v, np.int64), n)
              for n, v in (("s", [0]), ("e", [INT64_MAX]), ("a", [1]))]
    model = _head_graph([helper.make_node("Slice", ["hidden", "s", "e", "a"], ["kept"])], "kept", consts)
    assert add_logits_to_keep(model) is None
    assert [n.op_type for n in model.graph.node].count("Slice") == 1  # the same Slice, not a second one
    assert "s" not in {i.name for i in model.graph.initializer}        # its folded start is gone
    onnx.save(model, tmp_path / "m.onnx")
    session = _session(tmp_path / "m.onnx")
    hidden = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    every = session.run(None, {"hidden": hidden})[0]
    last = session.run(None, {"hidden": hidden, LOGITS_TO_KEEP: np.array(1, np.int64)})[0]
    assert every.shape == (2, 5, 3) and np.array_equal(last, every[:, -1:])


def test_a_graph_without_a_recognisable_head_is_left_alone_and_says_why(tmp_path):
    flat = _head_graph([helper.make_node("Flatten", ["hidden"], ["flat"], axis=2)], "flat")
    flat.graph.output[0].type.tensor_type.shape.ClearField("dim")
    assert "rank" in add_logits_to_keep(flat)
    soft = _head_graph([], "hidden")
    soft.graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"]))
    soft.graph.output[0].name = "probs"
    assert add_logits_to_keep(soft, "probs") == "no MatMul found making 'probs'"
    assert LOGITS_TO_KEEP not in {i.name for i in soft.graph.input}
