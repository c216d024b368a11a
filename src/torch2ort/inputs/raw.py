"""Raw audio and signal files as migration samples: each file through the bundle's own steps into a feed.

``--samples`` may name audio (.wav .flac .ogg) or signal (.npy .csv .mat .hea) files, or a folder
of them, when ``--preprocess`` starts with ``load_audio`` or ``load_signal``. Each file goes
through the bundle's own runtime steps (numpy, in this process) into a feed saved as a sample,
so verification runs on real inputs; the check stage then predicts from the files themselves
(``pipeline.check_raw``, which also records the per-step drift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.errors import SampleError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SIGNAL_SUFFIXES = (".npy", ".csv", ".mat", ".hea")


def raw_files(samples: str | None) -> list[str]:
    """The audio/signal files ``--samples`` names (a file or a folder of them); [] for .npz samples and texts."""
    if not samples:
        return []
    path = Path(samples)
    suffixes = AUDIO_SUFFIXES + SIGNAL_SUFFIXES
    if path.is_file():
        return [str(path)] if path.suffix.lower() in suffixes else []
    if path.is_dir() and not any(path.glob("*.npz")):
        return [str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in suffixes]
    return []


def feed_of(steps: list[dict], path: str, names: list[str], bundle_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The model's feed for one file, built by the bundle's runtime steps (which read their files, such as a
    mel filter bank, from ``bundle_dir``; default: the file's own folder)."""
    from torch2ort.errors import Torch2OrtError
    from torch2ort.runtime.processors import Context, run_preprocess

    try:
        value = run_preprocess(steps, path, Context(bundle_dir or Path(path).parent))
    except Torch2OrtError as exc:
        raise SampleError(f"--samples {path}: {exc.one_line()}") from None
    if isinstance(value, np.ndarray):
        value = {names[0]: value}
    if not isinstance(value, dict):
        raise SampleError(f"--samples {path}: the preprocess steps give a {type(value).__name__}, not arrays")
    return value


def prepare_raw(files: list[str], steps: list[dict], names: list[str], folder: Path,
                assets: dict[str, np.ndarray] | None = None) -> str:
    """Write one ``raw-<stem>.npz`` feed per file into ``folder``; returns the folder (the samples to verify on).
    ``assets``: the arrays the steps read as bundle files (an hf folder's mel filter bank), by file name."""
    from torch2ort.runtime.processors import FILE_LOADERS

    if not steps or steps[0]["op"] not in FILE_LOADERS:
        raise SampleError(f"--samples {files[0]}: audio and signal files need --preprocess steps that start with "
                          f"{' or '.join(FILE_LOADERS)}")
    folder.mkdir(parents=True, exist_ok=True)
    bundle_dir = None
    if assets:
        bundle_dir = folder / "assets"
        bundle_dir.mkdir(exist_ok=True)
        for name, array in assets.items():
            np.save(bundle_dir / name, array)
    for i, f in enumerate(files):
        np.savez(folder / f"raw-{i:02d}-{Path(f).stem}.npz", **feed_of(steps, f, names, bundle_dir))
    return str(folder)
