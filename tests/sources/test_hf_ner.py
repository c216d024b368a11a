"""Token classification from raw text: `migrate hf:DIR` on BERT (WordPiece ``##`` sub-words) and RoBERTa
(byte-level BPE) folders gives a bundle whose entities equal transformers' pipeline("token-classification")
for every aggregation strategy, checked in the check stage and held here to a planted fault."""

from __future__ import annotations

import json
import shutil

import pytest

from fixtures.families import run_cli
from fixtures.ner import LABELS, TEXTS, ner_dir

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.slow  # two migrations, each with five pipeline references


@pytest.fixture(scope="module", params=["bert", "roberta"])
def migrated_ner(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"ner-{request.param}")
    path = ner_dir(root / request.param, request.param)
    texts = root / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = root / "out"
    assert run_cli("migrate", f"hf:{path}", "--samples", texts, "--no-bench", "-o", out) == 0
    return path, out


def test_entities_equal_the_pipeline_for_every_strategy(migrated_ner):
    _, out = migrated_ner
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "token-classification"
    checks = ev["check"]["outputs"]
    for strategy in ("none", "simple", "first", "average", "max"):
        check = checks[f"entities[{strategy}]"]
        assert check["passed"] and check["value"] == 1.0 and check["max_abs"] < 1e-4, check
    assert ev["check"]["input"] == f"{len(TEXTS)} raw texts" and not ev["check"]["torch_imported"]


def test_bundle_predict_takes_the_pipelines_option_names(migrated_ner):
    from torch2ort.errors import PredictInputError
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(migrated_ner[1] / "bundle")
    grouped = bundle.predict(TEXTS, aggregation_strategy="first")["entities"]
    assert len(grouped) == len(TEXTS) and sum(len(row) for row in grouped) >= len(TEXTS)  # real groups found
    labels = {e["entity_group"] for row in grouped for e in row}
    assert labels and labels <= {x.split("-")[-1] for x in LABELS} - {"O"}
    for e in grouped[0]:
        assert set(e) == {"entity_group", "score", "word", "start", "end"} and 0 <= e["start"] < e["end"]
    assert bundle.predict(TEXTS[0], aggregation_strategy="first")["entities"] == [grouped[0]]  # one text, same answer
    tokens = bundle.predict(TEXTS[:1], aggregation_strategy="none")["entities"][0]
    assert tokens and set(tokens[0]) == {"entity", "score", "index", "word", "start", "end"}
    everything = bundle.predict(TEXTS[:1], aggregation_strategy="none", ignore_labels=[])["entities"][0]
    assert len(everything) > len(tokens) or all(e["entity"] != "O" for e in everything)
    with pytest.raises(PredictInputError, match="not one of none, simple, first, average, max"):
        bundle.predict(TEXTS, aggregation_strategy="best")
    with pytest.raises(PredictInputError, match="takes no option 'threshold'"):
        bundle.predict(TEXTS, threshold=0.5)


def test_a_planted_label_swap_fails_the_entity_check(migrated_ner, tmp_path):
    """Swap two labels in a copy of the bundle: the same comparison the check stage makes must fail."""
    from torch2ort.parity.entities import compare_entities
    from torch2ort.pipeline.check_entities import bundle_entities, pipeline_entities

    path, out = migrated_ner
    broken = tmp_path / "bundle"
    shutil.copytree(out / "bundle", broken)
    manifest = json.loads((broken / "torch2ort.json").read_text())
    labels = manifest["labels"]
    labels[1], labels[3] = labels[3], labels[1]  # B-PER <-> B-LOC
    (broken / "torch2ort.json").write_text(json.dumps(manifest))
    got, _ = bundle_entities(broken, TEXTS, ("simple",))
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(path))
    agreement = compare_entities(got["simple"], pipeline_entities(path, model, TEXTS, "simple"), TEXTS, 1e-4)
    assert agreement.agree < agreement.texts and agreement.first_difference.startswith("text ")


def test_predict_cli_takes_options(migrated_ner, capsys):
    bundle = migrated_ner[1] / "bundle"
    assert run_cli("predict", bundle, "--text", TEXTS[1], "--option", "aggregation_strategy=max") == 0
    entities = json.loads(capsys.readouterr().out)["outputs"]["entities"]
    assert len(entities) == 1 and all("entity_group" in e for e in entities[0])
    assert run_cli("predict", bundle, "--text", "x", "--option", "aggregation_strategy=best") == 2
    assert "not one of" in capsys.readouterr().err
