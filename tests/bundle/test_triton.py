"""`torch2ort triton`: every config.pbtxt parses into Triton's own ModelConfig message."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import pytest
import tritonclient
from google.protobuf import text_format

from fixtures.families import run_cli
from torch2ort.bundle.triton import export_triton
from torch2ort.bundle.writer import pack
from torch2ort.errors import OutputExistsError


def model_config_pb2():
    """Triton's ModelConfig from the tritonclient wheel, loaded by path so grpc is never imported."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(config_text: str):
    pb2 = model_config_pb2()
    return text_format.Parse(config_text, pb2.ModelConfig()), pb2


def test_batched_cnn_config(exported, tmp_path):
    bundle = pack(exported("mobilenet"), tmp_path / "b", name="mobilenet", preprocess="image",
                  postprocess="softmax-topk", labels=[f"c{i}" for i in range(7)])
    res = export_triton(bundle, tmp_path / "repo", max_batch=16, instances=2, max_delay_ms=2.5)
    cfg, pb2 = parse((res.model_dir / "config.pbtxt").read_text())
    assert cfg.name == "mobilenet" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("image", pb2.TYPE_FP32, [3, 32, 32])]
    assert list(cfg.output[0].dims) == [7]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2500
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
    onnx.checker.check_model(str(res.model_dir / "1" / "model.onnx"))
    readme = (res.model_dir / "README.md").read_text()
    assert "preprocess `resize`" in readme and "postprocess `topk`" in readme and "c6" in readme


def test_unbatchable_model_gets_full_dims_and_gpu_tensorrt(exported, tmp_path):
    # --max-batch 0: no Triton batching, so dims are complete, dynamic ones as -1.
    bundle = pack(exported("attn_mil"), tmp_path / "b", name="attn_mil")
    res = export_triton(bundle, tmp_path / "repo", max_batch=0, gpu=True)
    cfg, pb2 = parse(res.config)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    dims = {i.name: list(i.dims) for i in cfg.input}
    assert dims["spectrograms"] == [-1, -1, 3, 32, 32] and cfg.input[1].data_type == pb2.TYPE_BOOL
    assert cfg.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    assert cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    assert "No pre/post-processing" in (res.model_dir / "README.md").read_text()


def test_external_data_goes_into_a_model_directory(exported, tmp_path):
    src = onnx.load(str(exported("encoder")))
    big = tmp_path / "ext.onnx"
    onnx.save_model(src, str(big), save_as_external_data=True, location="ext.onnx.data", size_threshold=1024)
    bundle = pack(big, tmp_path / "b", name="encoder")
    res = export_triton(bundle, tmp_path / "repo")
    model_dir = res.model_dir / "1" / "model.onnx"
    assert model_dir.is_dir() and (model_dir / "model.onnx").is_file() and (model_dir / "ext.onnx.data").is_file()
    onnx.checker.check_model(str(model_dir / "model.onnx"))
    parse(res.config)


def test_existing_model_needs_force_and_cli(exported, tmp_path, capsys):
    bundle = pack(exported("mobilenet"), tmp_path / "b", name="mobilenet")
    export_triton(bundle, tmp_path / "repo")
    with pytest.raises(OutputExistsError):
        export_triton(bundle, tmp_path / "repo")
    assert run_cli("triton", bundle, "-o", tmp_path / "repo") == 2
    assert run_cli("triton", bundle, "-o", tmp_path / "repo", "--force", "--instances", "3") == 0
    cfg, _ = parse((tmp_path / "repo" / "mobilenet" / "config.pbtxt").read_text())
    assert cfg.instance_group[0].count == 3
    assert run_cli("triton", tmp_path / "nope", "-o", tmp_path / "repo") == 2


def test_max_batch_size_only_when_every_tensor_has_a_dynamic_first_dim():
    from torch2ort.bundle.triton import render_config

    manifest = {"name": "m", "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}],
                "outputs": [{"name": "y", "dtype": "int64", "shape": [4]}]}
    text, mbs = render_config(manifest, max_batch=8)
    cfg, pb2 = parse(text)
    assert mbs == 0 and cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [-1, 4]
    manifest["outputs"][0]["shape"] = ["batch"]
    cfg, _ = parse(render_config(manifest, max_batch=8)[0])
    assert cfg.max_batch_size == 8 and list(cfg.output[0].dims) == [] and list(cfg.input[0].dims) == [4]
