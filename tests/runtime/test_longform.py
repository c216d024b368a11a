"""runtime/longform.py against transformers' own code: the chunk spans against the pipeline's ``chunk_iter``,
and the merged transcript against the Whisper tokenizer's ``_decode_asr`` on generated chunk outputs (overlaps,
language tokens, timestamp tokens inside and outside the strides, a prompt). No model runs here; the bundle
against the pipeline end to end is in tests/pipeline/test_migrate_speech.py."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import PredictInputError
from torch2ort.runtime.longform import AsrVocab, Chunking, longest_common_sequence, transcript

RATE = 16000


class _Recorder:
    """Stands in for the feature extractor in ``chunk_iter``: keeps each chunk it is handed (the spans are the
    subject here; the features of a chunk are the runtime's log-mel, tested in tests/sources/test_hf_speech.py)."""

    sampling_rate = RATE

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def __call__(self, chunk, **_):
        self.chunks.append(chunk)
        return {}


@pytest.mark.parametrize("seed", range(4))
def test_spans_are_the_pipelines_chunk_iter(seed):
    from transformers.pipelines.automatic_speech_recognition import chunk_iter

    rng = np.random.default_rng(seed)
    cases = [(48000, 48000, 8000, 8000), (48001, 48000, 8000, 8000), (7999, 48000, 8000, 8000),
             (96000, 40000, 16000, 0), (100, 30, 0, 29), (105600, 48000, 8000, 8000)]
    for _ in range(60):
        chunk = int(rng.integers(10, 4000))
        left, right = (int(x) for x in rng.integers(0, chunk // 2, size=2))
        if chunk > left + right:
            cases.append((int(rng.integers(1, 20000)), chunk, left, right))
    for n, chunk, left, right in cases:
        wave = np.arange(n, dtype=np.float64)  # each sample is its own index: a chunk's first value is its start
        rec = _Recorder()
        want, starts = [], []
        for item in chunk_iter(wave, rec, chunk, left, right):  # the extractor sees each chunk before its yield
            want.append(item["stride"])
            starts.append(int(rec.chunks[-1][0]))
        got = Chunking(chunk, left, right).spans(n)
        assert [s.stride for s in got] == want, (n, chunk, left, right)
        assert [s.start for s in got] == starts


def test_options_round_to_samples_as_the_pipeline_and_default_to_a_sixth():
    assert Chunking.of(30, None, rate=RATE, window_s=30.0) == Chunking(480000, 80000, 80000)
    assert Chunking.of(None, None, rate=RATE, window_s=3.0) == Chunking(48000, 8000, 8000)
    assert Chunking.of(2.5, [0.8, 0.4], rate=RATE, window_s=3.0) == Chunking(40000, 12800, 6400)
    assert Chunking.of(1e-4, 0, rate=RATE, window_s=3.0) == Chunking(2, 0, 0)  # round(1.6)


@pytest.mark.parametrize(("chunk", "stride"), [
    (float("nan"), None), (float("inf"), None), (-1, None), (0, None), (1e99, None), (3.5, None), ("8", None),
    (True, None), ([3], None), (3, float("nan")), (3, -1), (3, [1]), (3, [1, 2, 3]), (3, "1"), (3, 1.5),
    (3, [2, 1]), (3, [0.5, float("-inf")]), (3, {"left": 1}), (1e-5, None)])
def test_bad_chunk_options_are_one_line_errors(chunk, stride):
    with pytest.raises(PredictInputError) as err:
        Chunking.of(chunk, stride, rate=RATE, window_s=3.0)
    assert "\n" not in str(err.value) and ("chunk_length_s" in str(err.value) or "stride_length_s" in str(err.value))


@pytest.fixture(scope="module")
def whisper_tok(tmp_path_factory):
    """The fixture's WhisperTokenizer, and the runtime's facts about it as ``sources/hf_speech.py`` records them."""
    import transformers
    from tests.fixtures.speech import WINDOW_SECONDS, whisper_tokenizer
    from tokenizers import Tokenizer

    from torch2ort.sources.hf_speech import transcript_facts

    folder = tmp_path_factory.mktemp("whisper-tok")
    tok = whisper_tokenizer()
    extractor = transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=WINDOW_SECONDS)
    transformers.WhisperProcessor(feature_extractor=extractor, tokenizer=tok).save_pretrained(folder)
    extractor.save_pretrained(folder)
    vocab = AsrVocab.from_info({"transcript": transcript_facts(folder, WINDOW_SECONDS * 50)})
    return tok, vocab, vocab.decode(Tokenizer.from_file(str(folder / "tokenizer.json")))


def test_the_recorded_facts_are_the_tokenizers(whisper_tok):
    from tests.fixtures.speech import DE, EN, EOT, NO_TIMESTAMPS, SOT

    tok, vocab, _ = whisper_tok
    assert vocab.special_ids == frozenset(tok.all_special_ids)
    assert vocab.languages == {EN: "english", DE: "german"}
    assert vocab.timestamp_begin == NO_TIMESTAMPS + 1 and vocab.time_precision == 0.02
    assert (vocab.prompt_token_id, vocab.start_token_id) == (EOT, SOT)  # no <|startofprev|>: the unknown token


def _outputs(rng, n_chunks: int, vocab: AsrVocab, timestamps: bool) -> list[list[int]]:
    """Chunk outputs as a Whisper model might give them: overlapping windows of one token stream (so the merge
    has real overlaps to find), with some tokens changed, and specials and timestamp tokens sprinkled in."""
    from tests.fixtures.speech import DE, EN, EOT, SOT

    stream = [int(t) for t in rng.integers(32, 127, size=40 * n_chunks)]
    outs = []
    for k in range(n_chunks):
        start = k * 30 + int(rng.integers(0, 6))
        seq = stream[start:start + int(rng.integers(0, 50))]
        seq = [int(rng.integers(32, 127)) if rng.random() < 0.1 else t for t in seq]
        for _ in range(int(rng.integers(0, 3))):
            seq.insert(int(rng.integers(0, len(seq) + 1)), int(rng.choice([EN, DE, EN, EOT, SOT])))
        if timestamps:
            for _ in range(int(rng.integers(0, 5))):
                stamp = vocab.timestamp_begin + int(rng.integers(0, 160))
                at = int(rng.integers(0, len(seq) + 1))
                seq[at:at] = [stamp] * int(rng.integers(1, 3))
        if rng.random() < 0.05:
            seq.insert(0, vocab.prompt_token_id)
        outs.append(seq + ([EOT] if rng.random() < 0.7 else []))
    return outs


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "stray-timestamps"])
def test_transcript_equals_decode_asr(whisper_tok, timestamps):
    """300 generated recordings of 1-6 chunks each, at random chunk and stride lengths (and unchunked): the same
    text as the Whisper tokenizer's ``_decode_asr``, which the pipeline calls with these strides in seconds."""
    tok, vocab, decode = whisper_tok
    rng = np.random.default_rng(7 + timestamps)
    merges = 0
    for case in range(300):
        n = int(rng.integers(1, 7))
        outs = _outputs(rng, n, vocab, timestamps)
        if case % 10 == 0:  # one unchunked window: no strides at all
            outs, strides = outs[:1], None
        else:
            chunk = int(rng.integers(8000, 48001))
            left, right = (int(x) for x in rng.integers(0, chunk // 3, size=2))
            strides = [(chunk, 0 if k == 0 else left, 0 if k == n - 1 else right) for k in range(n)]
        model_outputs = [{"tokens": np.asarray([o], dtype=np.int64)} for o in outs]
        if strides:
            for m, s in zip(model_outputs, strides):
                m["stride"] = tuple(x / RATE for x in s)
        want, _ = tok._decode_asr(model_outputs, return_timestamps=None, return_language=None,
                                  time_precision=vocab.time_precision)
        got, ids = transcript(outs, strides, vocab, decode)
        assert got == want, (case, outs, strides)
        merges += len(outs) > 1 and len(ids) < sum(t not in vocab.special_ids for o in outs for t in o)
    assert merges > 100  # the overlaps were found and cut, not merely concatenated


def test_longest_common_sequence_cuts_the_overlap_at_its_middle():
    from transformers.models.whisper.tokenization_whisper import _find_longest_common_sequence

    seqs = [[1, 2, 3, 4, 5, 6], [4, 5, 6, 7, 8], [7, 9, 9, 10, 11]]
    assert longest_common_sequence(seqs) == _find_longest_common_sequence(seqs)
    assert longest_common_sequence(seqs)[:8] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert longest_common_sequence([[], [1, 2]]) == [1, 2] and longest_common_sequence([[1, 2], []]) == [1, 2]
