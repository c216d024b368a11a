"""The check stage for a Whisper bundle: the packed bundle transcribes the raw files in a torch-blocked process,
and each text must equal ``pipeline("automatic-speech-recognition")`` on the same folder and waveform.

A file longer than one window is transcribed in chunks by the bundle (its default: chunks of one window, a
sixth of it as stride each side) and compared with the pipeline called with ``chunk_length_s`` = the window
(whose default stride is the same sixth).

The pipeline is given each clip as the 16 kHz waveform the runtime's ``load_audio`` decodes (it would need
ffmpeg to read a file and torchaudio to resample one; neither is a torch2ort dependency). For a 16 kHz mono
PCM file that waveform is the file's own samples. The bundle reads the file itself, from its path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from torch2ort.errors import BundleError, ParityError
from torch2ort.evidence import CheckInfo, OutputCheck
from torch2ort.pipeline.checks import BLOCK_TORCH
from torch2ort.pipeline.state import MigrationState

_TRANSCRIBE = """
import json, sys
from torch2ort.runtime import Bundle
bundle_dir, files_path = sys.argv[1:3]
files = json.load(open(files_path))
bundle = Bundle.load(bundle_dir)
alone = [bundle.predict(f)["text"] for f in files]
batched = bundle.predict(files)["text"]
print(json.dumps({"alone": alone, "batched": batched, "torch_imported": "torch" in sys.modules}))
"""


def bundle_transcribe(bundle_dir: str | Path, files: list[str], timeout_s: float = 300) -> dict:
    """``Bundle.predict(file)["text"]`` for each file alone and all batched, in a torch-blocked subprocess."""
    with tempfile.TemporaryDirectory(prefix="torch2ort-check-") as tmp:
        path = Path(tmp) / "files.json"
        path.write_text(json.dumps([str(f) for f in files]))
        proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + _TRANSCRIBE, str(bundle_dir), str(path)],
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:400]
            raise BundleError(f"the bundle failed to transcribe in a torch-free process: {tail}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def check_speech(state: MigrationState) -> str:
    from torch2ort.parity.speech import clip_waves
    from torch2ort.sources.hf_speech import reference_pipeline

    files = [str(f) for f in state.raw_files]
    got = bundle_transcribe(state.bundle_dir, files)
    info = state.loaded.hints.speech
    greedy = not info.get("num_beams_set")
    window = float(info["max_seconds"])
    waves = clip_waves(files)
    long = [w.size > window * 16000 for w in waves]
    want = [""] * len(files)
    for chunked in (False, True):
        picked = [i for i, big in enumerate(long) if big == chunked]
        if picked:
            texts = reference_pipeline(state.loaded.hints.model_dir, [waves[i] for i in picked], greedy=greedy,
                                       **({"chunk_length_s": window} if chunked else {}))
            for i, text in zip(picked, texts):
                want[i] = text
    bad = [f"{Path(f).name} ({how}): pipeline {w[:40]!r}, bundle {g[:40]!r}"
           for how in ("alone", "batched") for f, w, g in zip(files, want, got[how]) if w != g]
    same = sum(w == g for how in ("alone", "batched") for w, g in zip(want, got[how])) / (2 * len(files))
    chunks = (f"; {sum(long)} longer than the {window:g} s window, compared with the pipeline at chunk_length_s="
              f"{window:g} (its default stride, {window / 6:g} s each side)" if any(long) else "")
    outputs = {"text": OutputCheck(metric="texts identical", value=same, passed=not bad,
                                   reference='pipeline("automatic-speech-recognition") on the same folder and '
                                             "waveform, each clip alone" + (
                                                 " (with num_beams=1: the folder does not set num_beams, so the "
                                                 "pipeline's own default is 5 beams, which the runtime does not "
                                                 "search)" if greedy else "") + chunks,
                                   reason="; ".join(bad) or f"identical on {len(files)} files, alone and batched",
                                   gate="identical")}
    state.evidence.check = CheckInfo(input=f"{len(files)} raw audio files ({', '.join(Path(f).name for f in files)})",
                                     torch_imported=got["torch_imported"], results=["text", "token_ids"],
                                     outputs=outputs)
    if got["torch_imported"]:
        bad.append("torch was imported while transcribing")
    if bad:
        raise ParityError("the packed bundle fails its end-to-end check: " + "; ".join(bad))
    return (f"bundle.predict(each of {len(files)} .wav files, alone and batched) in a torch-blocked process: texts "
            "identical to pipeline(\"automatic-speech-recognition\")" + (f", {sum(long)} of them in chunks" if any(long)
                                                                           else ""))
