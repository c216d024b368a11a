"""Long-form Whisper transcription: the chunks of a recording one at a time, or batched through encoder and decoder.

``Transcriber.transcripts`` runs the chunks of every clip in a call ``CHUNK_BATCH`` (8) at a time: one encoder
call and one decoder loop per batch. This times a 2-minute recording (6 chunks at the default 30 s chunks and
5 s strides) both ways, with ONNX Runtime at 2 intra-op threads, on a whisper-tiny-shaped model (random
weights: d_model 384, 4+4 layers, 6 heads, 80 mels, 30 s windows, 51,865-token vocabulary; the tokenizer is a
byte-level stand-in, so the text is meaningless, and random weights never stop early: every chunk decodes
``--new-tokens`` tokens, so both sides do the same number of steps). It also reports whether the batched
token ids equal the one-at-a-time ones.

    flock /tmp/t2o-bench.lock nice -n -10 .venv/bin/python benchmarks/whisper_longform.py [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def build(root: Path) -> Path:
    """A whisper-tiny-shaped folder exported and packed (cached under ``root``)."""
    bundle = root / "bundle"
    if (bundle / "torch2ort.json").is_file():
        return bundle
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from torch2ort.bundle.writer import pack
    from torch2ort.export.speech import export_speech
    from torch2ort.sources import ModelRequest, load_model

    folder = root / "whisper-tiny-shape"
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    vocab = {f"<{b:02x}>": b for b in range(256)}
    vocab.update({s: 256 + i for i, s in enumerate(specials)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    tokenizer = transformers.WhisperTokenizer(tokenizer_object=tok, bos_token=specials[0], eos_token=specials[0],
                                              pad_token=specials[0], unk_token=specials[0],
                                              additional_special_tokens=specials[1:])
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    transformers.WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    extractor.save_pretrained(folder)
    eot, sot, en, transcribe, nots = range(256, 261)
    config = transformers.WhisperConfig(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                                        decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                                        vocab_size=51865, num_mel_bins=80, max_source_positions=1500,
                                        max_target_positions=448, pad_token_id=eot, bos_token_id=eot,
                                        eos_token_id=eot, decoder_start_token_id=sot)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, num_beams=1,
        is_multilingual=True, lang_to_id={"<|en|>": en}, task_to_id={"transcribe": transcribe},
        no_timestamps_token_id=nots, language="<|en|>", task="transcribe")
    model.save_pretrained(folder)
    loaded = load_model(ModelRequest(f"hf:{folder}"))
    onnx = root / "onnx" / "model.onnx"
    onnx.parent.mkdir(exist_ok=True)
    res = export_speech(loaded, loaded.hints.spec, onnx)
    h = loaded.hints
    pack(res.path, bundle, name="whisper-tiny-shape", tokenizer=h.tokenizer, preprocess=h.preprocess,
         assets=h.assets, speech=h.speech)
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per chunk (default 64)")
    ap.add_argument("--seconds", type=float, default=120.0, help="recording length (default 120)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "t2o-whisper-longform"))
    args = ap.parse_args()

    from torch2ort.inputs.media import speech_like
    from torch2ort.runtime import Bundle

    load_start = os.getloadavg()
    bundle = Bundle.load(build(Path(args.cache)), intra_op_num_threads=2)
    transcriber = bundle.transcriber()
    wave = speech_like(16000, args.seconds, seed=0)
    chunking = transcriber.chunking(30, 5)
    results = {}
    for name, batch in (("one chunk at a time", 1), ("batched (CHUNK_BATCH)", 8)):
        transcriber.transcripts([wave], chunking, args.new_tokens, batch=batch)  # warm-up
        times, out = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = transcriber.transcripts([wave], chunking, args.new_tokens, batch=batch)[0]
            times.append(time.perf_counter() - start)
        results[name] = {"median_s": statistics.median(times), "runs_s": times, "chunks": len(out.spans),
                         "tokens": out.chunk_tokens}
    one, many = results["one chunk at a time"], results["batched (CHUNK_BATCH)"]
    print(json.dumps({
        "model": "whisper-tiny shape, random weights", "recording_s": args.seconds, "chunks": one["chunks"],
        "new_tokens_per_chunk": args.new_tokens, "threads": 2,
        "load_start": load_start, "load_end": os.getloadavg(),
        "one_at_a_time_s": one["median_s"], "batched_s": many["median_s"],
        "speedup": one["median_s"] / many["median_s"], "runs": {k: v["runs_s"] for k, v in results.items()},
        "same_token_ids": one["tokens"] == many["tokens"],
        "chunk_token_lengths": [len(t) for t in many["tokens"]]}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
