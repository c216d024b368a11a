"""Task gates on the post-processed answer (parity/answers.py): entity groups, boxes matched at IoU 0.9 with
the same label, pixel classes; held with a 95% lower bound by the judge; a degraded variant is refused,
through the optimiser too."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import UsageError
from torch2ort.parity.answers import answer_comparisons, answers_of, box_agreement, entity_groups, iou
from torch2ort.parity.compare import RunRecord, RunResults, compare
from torch2ort.parity.gates import Gate, parse_gate, resolve_gates
from torch2ort.parity.judge import judge

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
NER = [{"op": "entities", "output": "logits"}]
DET = [{"op": "detections", "output": "logits", "boxes": "pred_boxes", "threshold": 0.5}]
SEG = [{"op": "segment", "output": "logits"}]


def _one_hot(tags: list[list[int]], classes: int = len(TAGS)) -> np.ndarray:
    return (np.eye(classes, dtype=np.float32)[np.array(tags)] * 6).astype(np.float32)


def test_entity_groups_follow_the_simple_strategy():
    logits = _one_hot([[0, 1, 2, 0, 3, 4, 4, 1, 1, 2]])
    assert entity_groups(logits, None, TAGS) == [{("PER", 1, 2), ("LOC", 4, 6), ("PER", 7, 7), ("PER", 8, 9)}]
    mask = np.array([[1, 1, 1, 1, 1, 1, 0, 0, 0, 0]])
    assert entity_groups(logits, mask, TAGS) == [{("PER", 1, 2), ("LOC", 4, 5)}]
    # I- after another type, or after a gap, starts a group; bare labels group by name
    assert entity_groups(_one_hot([[4, 2, 2, 0, 2]]), None, TAGS) == [{("LOC", 0, 0), ("PER", 1, 2), ("PER", 4, 4)}]
    assert entity_groups(_one_hot([[1, 1, 0]], 2), None, ["O", "MISC"]) == [{("MISC", 0, 1)}]


def test_boxes_match_by_label_and_iou():
    a = np.array([0.1, 0.1, 0.5, 0.5])
    assert iou(a, a) == 1.0 and iou(a, np.array([0.5, 0.5, 0.9, 0.9])) == 0.0
    nudged = a + np.array([0.0, 0.0, 0.01, 0.01])  # IoU 0.952
    assert box_agreement([(1, a)], [(1, nudged)]) == (1, 1)
    assert box_agreement([(1, a)], [(2, a)]) == (0, 2)  # a label swap: one missed, one extra
    assert box_agreement([(1, a)], [(1, a + 0.05)]) == (0, 2)  # IoU 0.62
    assert box_agreement([(1, a), (1, a)], [(1, a)]) == (1, 2) and box_agreement([], []) == (0, 0)


def _cases(kind: str, seed: int = 0) -> tuple[list[tuple[str, dict, dict]], dict]:
    """(case, feed, torch outputs) for a few cases of one task."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(4):
        if kind == "ner":
            out = {"logits": (rng.standard_normal((8, 12, len(TAGS))) * 3).astype(np.float32)}
            feed = {"attention_mask": (np.arange(12)[None] < rng.integers(6, 13, (8, 1))).astype(np.int64)}
        elif kind == "det":
            logits = (rng.standard_normal((2, 20, 5)) * 4).astype(np.float32)
            out = {"logits": logits, "pred_boxes": rng.uniform(0.2, 0.6, (2, 20, 4)).astype(np.float32)}
            feed = {}
        else:
            out = {"logits": rng.standard_normal((2, 4, 16, 16)).astype(np.float32)}
            feed = {}
        cases.append((f"case-{i}", feed, out))
    return cases, {"ner": NER, "det": DET, "seg": SEG}[kind]


def _verdict(kind: str, degrade, accept: list[str] | None = None):
    cases, post = _cases(kind)
    records = []
    for name, _, out in cases:
        records.append(RunRecord("torch", name, "sample", out))
        records.append(RunRecord("variant", name, "sample", {k: degrade(k, v) for k, v in out.items()}))
    results = RunResults(records)
    answers = answers_of(post)
    refs = {k: [out[k] for _, _, out in cases] for k in cases[0][2]}
    gates = resolve_gates([parse_gate(a) for a in accept or []], refs, None, answers)
    report = compare(results, "torch")
    report.comparisons += answer_comparisons(results, answers, {n: f for n, f, _ in cases}, TAGS, "variant")
    return judge(report, gates, "variant"), gates


@pytest.mark.parametrize("kind,answer,metric", [("ner", "entities", "entities"), ("det", "detections", "boxes"),
                                                ("seg", "segmentation", "pixels")])
def test_a_faithful_variant_passes_and_a_degraded_one_is_refused(kind, answer, metric):
    noise = np.random.default_rng(9)
    tiny = lambda k, v: v + np.float32(1e-5) * noise.standard_normal(v.shape).astype(np.float32)  # noqa: E731
    verdict, gates = _verdict(kind, tiny)
    assert set(gates) == {answer} and gates[answer].metric == metric
    assert gates[answer].limit == (0.99 if metric == "pixels" else 0.95)
    check = verdict.checks[0]
    assert verdict and check.value == 1.0 and check.bound is not None and check.n > 0, verdict.to_dict()

    def degraded(k, v):  # what a bad quantisation does: the class scores blur
        return v + np.float32(2.0) * noise.standard_normal(v.shape).astype(np.float32) if k == "logits" else v

    bad, _ = _verdict(kind, degraded)
    assert not bad and bad.checks[0].value < 0.9 and bad.failures()[0].startswith(f"{answer}: {metric} ")


def test_boxes_that_move_fail_even_with_the_same_labels():
    verdict, _ = _verdict("det", lambda k, v: v * np.float32(1.3) if k == "pred_boxes" else v)
    assert not verdict and verdict.checks[0].value < 0.5


def test_answer_gates_are_named_checked_and_refused_where_they_cannot_judge():
    refs = {"logits": [np.zeros((1, 4, 8, 8), np.float32)]}
    seg = answers_of(SEG)
    assert resolve_gates([parse_gate("pixels>=0.95")], refs, None, seg)["segmentation"].text() == \
        "segmentation:pixels>=0.95"
    assert resolve_gates([parse_gate("segmentation:pixels>=0.9")], refs, None, seg)["segmentation"].limit == 0.9
    both = resolve_gates([parse_gate("logits:maxabs<=0.1")], refs, None, seg)  # a raw gate asked for stays
    assert set(both) == {"segmentation", "logits"}
    for text, needle in [("boxes>=0.99", "no answer of this bundle is judged by boxes"),
                         ("segmentation:top1>=0.9", "judged by pixels")]:
        with pytest.raises(UsageError, match=needle):
            resolve_gates([parse_gate(text)], refs, None, seg)
    with pytest.raises(UsageError, match="has none"):
        resolve_gates([parse_gate("pixels>=0.99")], refs)
    for bad in ("pixels>=1.5", "boxes>=-0.1", "entities>=nan"):
        with pytest.raises(UsageError):
            parse_gate(bad)
    assert Gate("boxes", 0.99).op == ">="


def test_the_optimiser_judges_a_segmentation_model_on_its_pixels(exported, tmp_path):
    from fixtures import faults
    from fixtures.families import FAMILIES, load_family
    from torch2ort.optimization.planner import BASELINE, optimize

    fam, post = FAMILIES["lipsync"], [{"op": "segment", "output": "output_0"}]
    good = optimize(load_family("lipsync"), None, exported("lipsync"), fam.spec, passes=["graph"],
                    accept=["pixels>=0.99"], postprocess=post)
    assert list(good.gates) == ["segmentation"] and good.variant(BASELINE).passed and good.variant("graph").passed
    check = good.variant(BASELINE).gate["checks"][0]
    assert check["metric"] == "pixels" and check["value"] == 1.0 and check["n"] >= 4 * 32 * 32
    bad_path = tmp_path / "bad.onnx"
    faults.perturb_weight(exported("lipsync"), bad_path)
    bad = optimize(load_family("lipsync"), None, bad_path, fam.spec, passes=["graph"], accept=["pixels>=0.99"],
                   postprocess=post)
    assert not bad.variant(BASELINE).passed and not bad.variant("graph").passed and bad.chosen is None
    assert bad.variant(BASELINE).gate["checks"][0]["value"] < 0.99
