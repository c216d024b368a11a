"""Bundles with structured answers over tiny hand-built ONNX models: named entities from text, detections,
a segmentation map and zero-shot labels from image files. The models are real graphs (an embedding table
per token; a linear head on the image's mean colour; a strided convolution; two towers, CLIP's inputs and
outputs), built in milliseconds; what the tests
prove is the serving of the answers, which is the same for any model behind them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fixtures.ner import LABELS as NER_LABELS
from fixtures.ner import _wordpiece
from torch2ort.bundle.writer import pack

BOX_LABELS = ["person", "car", "dog", "cat"]
REGION_LABELS = ["background", "road", "person", "car", "sky"]
QUERIES = 6
IMAGE_STEPS = [{"op": "load_image", "mode": "RGB"}, {"op": "resize", "size": [32, 32]},
               {"op": "to_array", "dtype": "float32"}, {"op": "scale", "factor": 1 / 255}, {"op": "hwc_to_chw"},
               {"op": "add_batch"}, {"op": "to_input", "name": "pixel_values"}]


def _save(nodes, name, inputs, outputs, inits, path: Path) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def ner_bundle(root: Path) -> Path:
    """Token logits from a table per token id (peaked: labels by wide margins), WordPiece tokenizer."""
    from onnx import TensorProto, helper, numpy_helper

    tok, _ = _wordpiece()
    tok.save(str(root / "tokenizer.json"))
    table = np.random.default_rng(0).standard_normal((tok.get_vocab_size(), len(NER_LABELS))).astype(np.float32) * 4
    table[:, 0] += 3  # mostly O: entities are the exception
    ids = ["batch", "sequence"]
    model = _save([helper.make_node("Gather", ["table", "input_ids"], ["logits"])], "ner",
                  [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ids),
                   helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ids)],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [*ids, len(NER_LABELS)])],
                  [numpy_helper.from_array(table, "table")], root / "ner.onnx")
    return pack(model, root / "ner", name="ner", labels=NER_LABELS, tokenizer=root / "tokenizer.json",
                preprocess=[{"op": "tokenize", "outputs": ["input_ids", "attention_mask"], "max_length": 64}],
                postprocess=[{"op": "entities", "output": "logits", "max_length": 64}])


def _image_mean(nodes: list, inits: list) -> str:
    from onnx import helper, numpy_helper

    nodes.append(helper.make_node("ReduceMean", ["pixel_values", "hw"], ["colour"], keepdims=0))  # [batch, 3]
    inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw"))
    return "colour"


def boxes_bundle(root: Path) -> Path:
    """DETR-shaped outputs from the image's mean colour: ``logits`` [batch, queries, classes + 1] and
    ``pred_boxes`` [batch, queries, 4] (sigmoid: centre and size relative to the image)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits = [], []
    colour = _image_mean(nodes, inits)
    classes = len(BOX_LABELS) + 1
    nodes += [helper.make_node("Gemm", [colour, "wl", "bl"], ["l2"]),
              helper.make_node("Reshape", ["l2", "lshape"], ["logits"]),
              helper.make_node("Gemm", [colour, "wb", "bb"], ["b2"]),
              helper.make_node("Sigmoid", ["b2"], ["b3"]),
              helper.make_node("Reshape", ["b3", "bshape"], ["pred_boxes"])]
    inits += [numpy_helper.from_array((rng.standard_normal((3, QUERIES * classes)) * 12).astype(np.float32), "wl"),
              numpy_helper.from_array((rng.standard_normal(QUERIES * classes) * 2).astype(np.float32), "bl"),
              numpy_helper.from_array((rng.standard_normal((3, QUERIES * 4)) * 3).astype(np.float32), "wb"),
              numpy_helper.from_array(rng.standard_normal(QUERIES * 4).astype(np.float32), "bb"),
              numpy_helper.from_array(np.array([-1, QUERIES, classes], np.int64), "lshape"),
              numpy_helper.from_array(np.array([-1, QUERIES, 4], np.int64), "bshape")]
    model = _save(nodes, "boxes", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                                                 ["batch", 3, 32, 32])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", QUERIES, classes]),
                   helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, ["batch", QUERIES, 4])],
                  inits, root / "boxes.onnx")
    return pack(model, root / "boxes", name="boxes", labels=BOX_LABELS, preprocess=IMAGE_STEPS,
                postprocess=[{"op": "detections", "output": "logits", "boxes": "pred_boxes", "threshold": 0.5}])


def regions_bundle(root: Path) -> Path:
    """SegFormer-shaped class scores [batch, classes, 8, 8] from a 4x4 strided convolution of the pixels."""
    from onnx import TensorProto, helper, numpy_helper

    weight = (np.random.default_rng(2).standard_normal((len(REGION_LABELS), 3, 4, 4)) * 2).astype(np.float32)
    nodes = [helper.make_node("Conv", ["pixel_values", "w"], ["logits"], strides=[4, 4])]
    model = _save(nodes, "regions", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                                                   ["batch", 3, 32, 32])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(REGION_LABELS), 8, 8])],
                  [numpy_helper.from_array(weight, "w")], root / "regions.onnx")
    return pack(model, root / "regions", name="regions", labels=REGION_LABELS, preprocess=IMAGE_STEPS,
                postprocess=[{"op": "segment", "output": "logits", "name": "segmentation"}])


def zero_shot_bundle(root: Path) -> Path:
    """CLIP's graph interface with two tiny towers: the image's mean colour through a linear layer, the
    masked sum of a label's token embeddings; both L2-normalised, ``logits_per_image`` their scaled cosine
    [batch, labels]. Labels are formatted and tokenised by the ``candidate_labels`` step (WordPiece)."""
    from onnx import TensorProto, helper, numpy_helper

    from fixtures.tokenizer import tiny_tokenizer

    vocab = tiny_tokenizer(root / "zs-tokenizer.json")
    rng, dim = np.random.default_rng(3), 8
    nodes, inits = [], []
    colour = _image_mean(nodes, inits)
    # random test images all average near grey: what the tower sees is their small departure from it
    nodes += [helper.make_node("Sub", [colour, "grey"], ["tint"]),
              helper.make_node("Gemm", ["tint", "wi", "bi"], ["image_raw"]),
              helper.make_node("LpNormalization", ["image_raw"], ["image_embeds"], axis=-1, p=2),
              helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
              helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
              helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
              helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
              helper.make_node("ReduceSum", ["masked", "seq"], ["text_raw"], keepdims=0),
              helper.make_node("LpNormalization", ["text_raw"], ["text_embeds"], axis=-1, p=2),
              helper.make_node("Transpose", ["text_embeds"], ["text_t"], perm=[1, 0]),
              helper.make_node("MatMul", ["image_embeds", "text_t"], ["cosine"]),
              helper.make_node("Mul", ["cosine", "scale"], ["logits_per_image"]),
              helper.make_node("Transpose", ["logits_per_image"], ["logits_per_text"], perm=[1, 0])]
    inits += [numpy_helper.from_array((rng.standard_normal((3, dim)) * 300).astype(np.float32), "wi"),
              numpy_helper.from_array((rng.standard_normal(dim) * 0.1).astype(np.float32), "bi"),
              numpy_helper.from_array(np.full(3, 0.5, np.float32), "grey"),
              numpy_helper.from_array(rng.standard_normal((len(vocab), dim)).astype(np.float32), "table"),
              numpy_helper.from_array(np.array([2], np.int64), "last"),
              numpy_helper.from_array(np.array([1], np.int64), "seq"),
              numpy_helper.from_array(np.array(20.0, np.float32), "scale")]
    text = ["labels", "sequence"]
    model = _save(nodes, "zeroshot",
                  [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 32, 32]),
                   helper.make_tensor_value_info("input_ids", TensorProto.INT64, text),
                   helper.make_tensor_value_info("attention_mask", TensorProto.INT64, text)],
                  [helper.make_tensor_value_info("logits_per_image", TensorProto.FLOAT, ["batch", "labels"]),
                   helper.make_tensor_value_info("logits_per_text", TensorProto.FLOAT, ["labels", "batch"]),
                   helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["labels", dim]),
                   helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
                  inits, root / "zeroshot.onnx")
    steps = [*IMAGE_STEPS, {"op": "candidate_labels", "hypothesis_template": "a {}", "file": "tokenizer.json",
                            "max_length": 16, "pad_id": 0}]
    return pack(model, root / "zeroshot", name="zeroshot", tokenizer=root / "zs-tokenizer.json", preprocess=steps,
                postprocess=[{"op": "zero_shot", "output": "logits_per_image", "name": "zero_shot"}])


def task_bundles(root: Path) -> dict[str, Path]:
    return {"ner": ner_bundle(root), "boxes": boxes_bundle(root), "regions": regions_bundle(root),
            "zeroshot": zero_shot_bundle(root)}
