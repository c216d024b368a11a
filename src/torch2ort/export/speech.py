"""Whisper's two graphs from one export: the encoder at the path asked for, the cached decoder beside it."""

from __future__ import annotations

from pathlib import Path

from torch2ort.export.exporters import ExportResult, export_onnx


def export_speech(loaded, spec, out: str | Path, **options) -> ExportResult:
    """The encoder at ``out`` and ``decoder.onnx`` beside it (``sources/hf_speech.py``); the encoder's
    ExportResult, whose ``why`` names the decoder's exporter too."""
    from torch2ort.sources.hf_speech import DECODER_FILE, decoder_loaded

    enc = export_onnx(loaded, spec, out, **options)
    dec_loaded = decoder_loaded(loaded)
    dec = export_onnx(dec_loaded, dec_loaded.hints.spec, Path(out).with_name(DECODER_FILE), **options)
    enc.why = f"encoder: {enc.why}; decoder ({DECODER_FILE}): {dec.exporter} ({dec.why})"
    enc.attempts |= {f"decoder:{k}": v for k, v in dec.attempts.items()}
    enc.seconds += dec.seconds
    return enc
