"""Bundle.generate / Bundle.stream on a tiny peaked Llama bundle: transformers' generate token for token
(left-padded batches, per-row EOS, stop strings, min_new_tokens), streaming, seeded sampling, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from torch2ort.errors import PredictInputError

torch = pytest.importorskip("torch")
PROMPTS = ["def f(x):", "The quick brown fox jumps", "ok"]


@pytest.fixture(scope="module")
def bundle(llama_decoder):
    from torch2ort.runtime import Bundle

    return Bundle.load(llama_decoder.bundle)


@pytest.fixture(scope="module")
def gqa_bundle(llama_decoder, tmp_path_factory):
    """The same Llama fused (GroupQueryAttention over grouped KV heads) and packed: its cache is shared."""
    from torch2ort.bundle.writer import pack
    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion
    from torch2ort.runtime import Bundle

    root = tmp_path_factory.mktemp("gqa")
    fused = DecoderFusion(max_positions=256)(llama_decoder.onnx, root / "fused.onnx", PassContext(root)).model
    hints = llama_decoder.loaded.hints
    return Bundle.load(pack(fused, root / "bundle", name="llama-gqa", tokenizer=hints.tokenizer,
                            generation=hints.generation))


@pytest.fixture(scope="module")
def hf(llama_decoder):
    from tokenizers import Tokenizer

    return llama_decoder.loaded.module.model, Tokenizer.from_file(str(llama_decoder.folder / "tokenizer.json"))


def _hf_generate(hf, prompts, **kwargs):
    """transformers' generate on the left-padded batch: each row's new tokens up to its EOS."""
    model, tok = hf
    enc = [tok.encode(p).ids for p in prompts]
    width = max(map(len, enc))
    ids = torch.tensor([[256] * (width - len(e)) + e for e in enc])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, pad_token_id=256, **kwargs)
    rows = []
    for row in out[:, width:].tolist():
        rows.append(row[:row.index(256) + 1] if 256 in row else row)
    return rows


def test_greedy_batch_matches_transformers(bundle, hf):
    got = bundle.generate(PROMPTS, max_new_tokens=24)
    assert got.token_ids == _hf_generate(hf, PROMPTS, max_new_tokens=24, do_sample=False)
    assert got.finish_reason == ["length"] * 3 and got.prompt_tokens == [9, 25, 2]
    assert got.text == [bundle.generator().tokenizer.decode(t) for t in got.token_ids]


def test_each_row_stops_at_its_own_eos(bundle, hf):
    """EOS taken as a token the greedy run of row 0 reaches at step 3 (the weights are random): row 0 stops
    there, the others run on, and transformers' generate with the same EOS agrees token for token."""
    from torch2ort.runtime.generate import Generator

    gen = bundle.generator()
    eos = gen.generate_ids([gen.encode([PROMPTS[0]])[0]], 4)[0][3]
    other = Generator(bundle.session, gen.tokenizer, {**gen.info, "eos_token_id": [eos]})
    out = other.generate(PROMPTS, max_new_tokens=20)
    assert out.finish_reason[0] == "eos" and out.token_ids[0][-1] == eos and len(out.token_ids[0]) <= 4
    want = _hf_generate(hf, PROMPTS, max_new_tokens=20, do_sample=False, eos_token_id=eos)
    assert out.token_ids == [row[:row.index(eos) + 1] if eos in row else row for row in want]
    held = other.generate(PROMPTS[:1], max_new_tokens=8, min_new_tokens=8)
    assert eos not in held.token_ids[0] and held.finish_reason == ["length"]


def test_stop_strings_end_a_row_and_stay_in_its_text(bundle):
    full = bundle.generate(PROMPTS, max_new_tokens=20)
    stop = full.text[1][5:7]
    assert stop
    out = bundle.generate(PROMPTS, max_new_tokens=20, stop=[stop])
    assert out.finish_reason[1] == "stop" and out.text[1].endswith(stop)
    assert full.text[1].startswith(out.text[1]) and len(out.token_ids[1]) < 20


def test_stream_yields_the_same_text_step_by_step(bundle):
    steps = list(bundle.stream(PROMPTS, max_new_tokens=12))
    assert len(steps) == 12 and [s.step for s in steps] == list(range(12))
    assert steps[0].finish_reason == [None] * 3 and steps[-1].finish_reason == ["length"] * 3
    whole = bundle.generate(PROMPTS, max_new_tokens=12)
    for row in range(3):
        assert "".join(s.text[row] for s in steps) == whole.text[row]
        assert [s.token_ids[row] for s in steps] == whole.token_ids[row]


def test_sampling_is_seeded(bundle):
    kw = dict(max_new_tokens=16, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, repetition_penalty=1.1)
    a, b, c = (bundle.generate(PROMPTS, seed=s, **kw).token_ids for s in (3, 3, 4))
    assert a == b and a != c


def test_kv_cache_is_not_copied_through_numpy(bundle, monkeypatch):
    """The past goes in as the previous step's OrtValues (IOBinding), never as numpy arrays."""
    gen = bundle.generator()
    bound_numpy: list[str] = []
    real = type(gen)._run

    def spy(self, binding, feed, past, *rest):
        bound_numpy.extend(k for k, v in past.items() if isinstance(v, np.ndarray))
        return real(self, binding, feed, past, *rest)

    monkeypatch.setattr(type(gen), "_run", spy)
    bundle.generate(PROMPTS[:1], max_new_tokens=4)
    assert bound_numpy == []


@pytest.mark.parametrize(("prompts", "kw"), [([], {}), ("", {}), (["a"], {"max_new_tokens": 0}),
                                             (["a"], {"stop": [""]}), (["a"], {"top_p": float("nan")}),
                                             ([3], {})])
def test_bad_requests_are_one_line_errors(bundle, prompts, kw):
    with pytest.raises(PredictInputError):
        bundle.generate(prompts, **kw)


def test_a_bundle_that_does_not_generate_says_so(mobilenet_bundle):
    from torch2ort.runtime import Bundle

    b = Bundle.load(mobilenet_bundle)
    assert not b.generates
    with pytest.raises(PredictInputError, match="not a text-generation bundle"):
        b.generate("hi")


def test_predict_streams_without_torch(llama_decoder, bundle):
    """`torch2ort predict BUNDLE --text ... --max-new-tokens N` in a process where torch cannot be imported."""
    from torch2ort.pipeline.checks import BLOCK_TORCH as BLOCK

    code = "import sys; from torch2ort.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", BLOCK + code, "predict", str(llama_decoder.bundle), "--text",
                           PROMPTS[1], "--max-new-tokens", "10"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == bundle.generate(PROMPTS[1], max_new_tokens=10).text[0] + "\n"
    bad = subprocess.run([sys.executable, "-c", BLOCK + code, "predict", str(llama_decoder.bundle), "--text", "a",
                          "--top-p", "2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "top_p" in bad.stderr and "Traceback" not in bad.stderr


def test_a_gqa_bundle_writes_its_cache_in_place_and_matches_transformers(gqa_bundle, bundle, hf, monkeypatch):
    """A GroupQueryAttention graph's bundle says its cache is shared; generate then binds one buffer per past and
    present, the same OrtValues (same memory) every step, and its tokens equal transformers' on a left-padded
    batch and alone."""
    assert gqa_bundle.manifest["generation"]["cache"] == "shared" and bundle.manifest["generation"]["cache"] == "concat"
    gen = gqa_bundle.generator()
    seen: list[tuple] = []
    real = type(gen)._run

    def spy(self, binding, feed, past, *rest):
        logits, present = real(self, binding, feed, past, *rest)
        seen.append((rest, {k: (id(v), v.data_ptr(), v.shape()[2]) for k, v in past.items()},
                     {k: (id(v), v.data_ptr()) for k, v in present.items()}))
        return logits, present

    monkeypatch.setattr(type(gen), "_run", spy)
    got = gqa_bundle.generate(PROMPTS, max_new_tokens=24)
    assert got.token_ids == _hf_generate(hf, PROMPTS, max_new_tokens=24, do_sample=False)
    assert len(seen) == 24 and all(rest == (True,) for rest, _, _ in seen)
    first = seen[0][1]
    assert all(past == first for _, past, _ in seen)  # the same buffers, 25 + 24 long, every step
    assert all(present == {k: v[:2] for k, v in first.items()} for _, _, present in seen)
    assert {v[2] for v in first.values()} == {25 + 24}
    monkeypatch.undo()
    assert gqa_bundle.generate(PROMPTS[2], max_new_tokens=24).token_ids == _hf_generate(
        hf, PROMPTS[2:], max_new_tokens=24, do_sample=False)


def test_a_shared_cache_grows_when_full_and_keeps_its_tokens(gqa_bundle, hf, monkeypatch):
    """The shared buffer starts GROW steps past the prompt and doubles (copied once) when full: still transformers'
    tokens, and only two buffer sets for 24 steps with GROW=4 (29 long, then 25 + 24)."""
    from torch2ort.runtime import generate

    monkeypatch.setattr(generate, "GROW", 4)
    gen = gqa_bundle.generator()
    lengths: list[int] = []
    real = type(gen)._run

    def spy(self, binding, feed, past, *rest):
        lengths.append(next(iter(past.values())).shape()[2])
        return real(self, binding, feed, past, *rest)

    monkeypatch.setattr(type(gen), "_run", spy)
    got = gqa_bundle.generate(PROMPTS, max_new_tokens=24)
    assert got.token_ids == _hf_generate(hf, PROMPTS, max_new_tokens=24, do_sample=False)
    assert lengths == [29] * 5 + [49] * 19


@pytest.mark.parametrize("cache", ["bogus", "", 3, ["shared"]])
def test_an_unknown_cache_mode_is_a_bundle_error(gqa_bundle, cache):
    from torch2ort.errors import BundleError
    from torch2ort.runtime.generate import Generator

    with pytest.raises(BundleError, match="cache"):
        Generator(gqa_bundle.session, None, {**gqa_bundle.manifest["generation"], "cache": cache})


@pytest.mark.parametrize("which", ["bundle", "gqa_bundle"])
def test_continuous_batching_gives_each_row_its_own_tokens(which, request):
    """DecodeBatch (the server's decode loop): rows join at different steps and leave when done or dropped;
    every step runs them together, and each row gets the tokens generate gives it alone, greedy or seeded.
    On a GroupQueryAttention graph it runs the cache unshared (concatenated) against generate's shared buffers."""
    from torch2ort.runtime.generate import DecodeBatch

    bundle = request.getfixturevalue(which)
    gen = bundle.generator()
    sampled = dict(do_sample=True, temperature=1.3, top_k=30, seed=5)
    want = {p: bundle.generate(p, max_new_tokens=24).token_ids[0] for p in PROMPTS}
    want["seeded"] = bundle.generate(PROMPTS[1], max_new_tokens=12, **sampled).token_ids[0]
    batch, got = DecodeBatch(gen), {k: [] for k in [*want, "dropped"]}
    joins = {0: [(PROMPTS[0], {})], 3: [(PROMPTS[1], {}), ("dropped", {})], 6: [(PROMPTS[2], {}), ("seeded", sampled)]}
    step = 0
    while batch or step <= max(joins):
        for key, kw in joins.get(step, []):
            text = PROMPTS[1] if key in ("seeded", "dropped") else key
            batch.join(key, gen.encode([text])[0], max_new_tokens=12 if key == "seeded" else 24, **kw)
        if step == 5:
            batch.drop("dropped")
        for key, token, _, _ in batch.step():
            got[key].append(token)
        step += 1
    assert {k: got[k] for k in want} == want
    assert len(got["dropped"]) == 2 and max(batch.runs) == 4 and batch.members == []


def test_detokenising_is_incremental_and_equals_the_whole_decode(bundle):
    """Token by token, the text given out equals decoding the whole row (multi-byte characters split across byte
    tokens included), while each step decodes only a few tokens, not the whole row."""
    from torch2ort.runtime.generate import Generator, _Row

    real = bundle.generator().tokenizer
    text = "naïve café — 東京 😀 done. " * 12
    ids = real.encode(text).ids
    widths = []

    class Counting:
        def decode(self, tokens, skip_special_tokens=True):
            widths.append(len(tokens))
            return real.decode(tokens, skip_special_tokens=skip_special_tokens)

    gen = Generator(bundle.session, Counting(), bundle.generator().info)
    row, out = _Row([0]), []
    for i, token in enumerate(ids):
        row.new.append(token)
        out.append(gen._advance(row, [], final=i == len(ids) - 1))
    assert "".join(out) == row.text == real.decode(ids) == text
    assert len(ids) > 300 and max(widths) <= 8  # 😀 is 4 byte tokens: the widest window
