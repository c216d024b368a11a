"""Token classification from raw text: `migrate hf:DIR` on BERT (WordPiece ``##`` sub-words) and RoBERTa
(byte-level BPE) folders gives a bundle whose entities equal transformers' pipeline("token-classification")
for every aggregation strategy, checked in the check stage and held here to a planted fault."""

from __future__ import annotations

import json

import pytest

from fixtures.families import run_cli
from fixtures.ner import LABELS, TEXTS, ner_dir

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.slow  # two migrations, each with five pipeline references


# (family, --kwargs): WordPiece, byte-level BPE, and windows of 16 tokens overlapping by 4 (stride)
KINDS = {"bert": ("bert", None), "roberta": ("roberta", None),
         "bert-stride": ("bert", '{"max_length": 16, "stride": 4}')}


@pytest.fixture(scope="module", params=list(KINDS))
def migrated_ner(request, tmp_path_factory):
    family, kwargs = KINDS[request.param]
    root = tmp_path_factory.mktemp(f"ner-{request.param}")
    path = ner_dir(root / family, family)
    texts = root / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = root / "out"
    extra = ["--kwargs", kwargs] if kwargs else []
    assert run_cli("migrate", f"hf:{path}", *extra, "--samples", texts, "--no-bench", "-o", out) == 0
    return path, out


def test_entities_equal_the_pipeline_for_every_strategy(migrated_ner):
    _, out = migrated_ner
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "token-classification"
    checks = ev["check"]["outputs"]
    windowed = "stride" in ev["command"]
    for strategy in ("none", "simple", "first", "average", "max"):
        if windowed and strategy == "none":  # the pipeline refuses it too: windows cannot be merged per token
            assert f"entities[{strategy}]" not in checks
            continue
        check = checks[f"entities[{strategy}]"]
        assert check["passed"] and check["value"] == 1.0 and check["max_abs"] < 1e-4, check
        assert ("stride=4" in check["reference"]) == windowed
    assert ev["check"]["input"] == f"{len(TEXTS)} raw texts" and not ev["check"]["torch_imported"]


def test_bundle_predict_takes_the_pipelines_option_names(migrated_ner):
    from torch2ort.errors import PredictInputError
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(migrated_ner[1] / "bundle")
    if bundle.manifest["preprocess"][0].get("stride"):
        rows = bundle.preprocess(TEXTS)["input_ids"].shape[0]
        assert rows > len(TEXTS)  # long texts became several windows
        with pytest.raises(PredictInputError, match="cannot merge the overlapping windows"):
            bundle.predict(TEXTS, aggregation_strategy="none")
        return
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
    from fixtures.faults import bundle_with
    from torch2ort.parity.entities import compare_entities
    from torch2ort.pipeline.check_entities import bundle_entities, pipeline_entities

    path, out = migrated_ner

    def swap(manifest):  # B-PER <-> B-LOC
        labels = manifest["labels"]
        labels[1], labels[3] = labels[3], labels[1]

    broken = bundle_with(out / "bundle", tmp_path / "bundle", swap)
    got, _ = bundle_entities(broken, TEXTS, ("simple",))
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(path))
    ref = pipeline_entities(path, model, TEXTS, ["simple"])["simple"]
    agreement = compare_entities(got["simple"], ref, TEXTS, 1e-4)
    assert agreement.agree < agreement.texts and agreement.first_difference.startswith("text ")


def test_predict_cli_takes_options(migrated_ner, capsys):
    bundle = migrated_ner[1] / "bundle"
    assert run_cli("predict", bundle, "--text", TEXTS[1], "--option", "aggregation_strategy=max") == 0
    entities = json.loads(capsys.readouterr().out)["outputs"]["entities"]
    assert len(entities) == 1 and all("entity_group" in e for e in entities[0])
    assert run_cli("predict", bundle, "--text", "x", "--option", "aggregation_strategy=best") == 2
    assert "not one of" in capsys.readouterr().err


def test_batch_writes_entities_as_nested_records(migrated_ner, tmp_path):
    import pyarrow.parquet as pq

    from torch2ort.batch import run_batch
    from torch2ort.runtime import Bundle

    bundle_dir = migrated_ner[1] / "bundle"  # with a stride too: a text's windows merge into its one row
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "ner.parquet"
    run_batch(bundle_dir, texts, out, batch_size=2, shard_rows=4, progress=False)
    table = pq.read_table(out)
    assert str(table.schema.field("entities").type).startswith("list<element: struct<entity_group: string")
    want = Bundle.load(bundle_dir).predict(TEXTS)["entities"]
    rows = sorted(table.to_pylist(), key=lambda r: r["row"])
    for row, expected in zip(rows, want):
        assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in row["entities"]] == \
               [(e["entity_group"], e["start"], e["end"], e["word"]) for e in expected]
        assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(row["entities"], expected))
