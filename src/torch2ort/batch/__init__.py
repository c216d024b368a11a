"""Batch inference over a corpus: INPUT (folder, text file, table column) -> a Parquet dataset.

Example::

    from torch2ort.batch import run_batch
    result = run_batch("minilm-bundle", "corpus.txt", "embeddings.parquet", batch_size=64)
    result.rows, result.errors, result.skipped_shards

    run_batch("emotion-bundle", "faces/", "labels.parquet", engine="ray", address="auto")
    run_batch("clip-bundle", "photos/", "labels.parquet", options={"candidate_labels": ["cat", "dog"]})

The library behind ``torch2ort batch`` (see docs/scale.md): ``inputs`` reads INPUT, ``job`` owns
the output folder and resuming, ``worker`` predicts and writes one shard, ``engines`` runs the
pending shards locally or on Ray. Needs ``torch2ort[batch]`` (pyarrow), and ``[ray]`` for Ray.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from torch2ort.errors import UsageError

ENGINES = ("local", "ray")


@dataclass
class BatchResult:
    out: Path
    rows: int            # rows written by this run
    errors: int          # of those, error rows
    shards: int          # shards in the job
    skipped_shards: int  # already written by an earlier run (resumed)
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def run_batch(bundle: str | Path, input_path: str | Path, out: str | Path, engine: str = "local",
              column: str | None = None, batch_size: int = 32, shard_rows: int = 1024,
              concurrency: int | None = None, threads: int | None = None, address: str | None = None,
              force: bool = False, providers: list[str] | None = None, progress: bool | None = None,
              options: dict | None = None) -> BatchResult:
    """Predict every input of ``input_path`` with ``bundle``; write (or resume) the dataset ``out``.

    ``options``: call options for every row, as ``Bundle.predict`` takes them (a zero-shot bundle's
    ``candidate_labels``, a token classifier's ``aggregation_strategy``); checked before any row runs."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("torch2ort batch writes Parquet with pyarrow: pip install 'torch2ort[batch]'") from None
    from torch2ort.batch import engines
    from torch2ort.batch.inputs import read_inputs
    from torch2ort.batch.job import make_plan, prepare_out
    from torch2ort.runtime import manifest as mf

    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise UsageError("--address is for --engine ray")
    from torch2ort import values as V

    V.optional_count("--concurrency", concurrency, 1, 1024)
    V.optional_count("--threads", threads, 1, V.MAX_THREADS)
    V.count("--batch-size", batch_size, 1, 2**20)
    V.count("--shard-rows", shard_rows, 1, 2**30)
    manifest = mf.read_manifest(Path(bundle))
    mf.verify_files(Path(bundle), manifest["files"])  # here, before any worker or Ray actor starts
    pre = manifest.get("preprocess", [])
    options = job_options(manifest, options)
    inputs = read_inputs(input_path, column, text_model=bool(pre) and pre[0].get("op") == "tokenize")
    if inputs.kind != "texts" and Path(input_path).is_dir() and Path(out).resolve().is_relative_to(inputs.root):
        raise UsageError(f"-o {out} is inside the input folder {input_path}: a rerun would read its own shards "
                         "as inputs; pick an -o outside it")
    plan = make_plan(bundle, input_path, column, inputs, batch_size, shard_rows, options)
    pending = prepare_out(out, plan, force)
    spec = engines.worker_spec(plan.bundle, inputs, str(Path(out).resolve()), plan.batch_size, providers, options)
    todo = sum(b - a for _, a, b in pending)
    bar = _bar(todo, progress)
    counts = {"rows": 0, "errors": 0}

    def tick(status: dict) -> None:
        counts["rows"] += status["rows"]
        counts["errors"] += status["errors"]
        bar.update(status["rows"])

    start = time.perf_counter()
    try:
        if pending and engine == "local":
            engines.run_local(spec, pending, concurrency, threads, tick)
        elif pending:
            engines.run_ray(spec, pending, address, concurrency, threads, tick)
    finally:
        bar.close()
    return BatchResult(Path(out), counts["rows"], counts["errors"], len(plan.shards),
                       len(plan.shards) - len(pending), time.perf_counter() - start)


def job_options(manifest: dict, options: dict | None) -> dict:
    """``options`` checked against the bundle's steps as ``Bundle.predict`` checks them, or UsageError; a
    zero-shot bundle without candidate labels is refused here, not once per row."""
    from torch2ort.errors import PredictInputError
    from torch2ort.runtime.processors import split_options

    if options is not None and not isinstance(options, dict):
        raise UsageError(f"options must be a dict of call options, got {type(options).__name__}")
    options = dict(options or {})
    pre, post = manifest.get("preprocess", []), manifest.get("postprocess", [])
    try:
        split_options(pre, post, options)
        if "candidate_labels" in options:  # a string is split at commas: refuse one that holds no label now
            from torch2ort.runtime.processors.zero_shot import label_list

            options["candidate_labels"] = label_list(options["candidate_labels"])
    except PredictInputError as exc:
        raise UsageError(f"--option: {exc}") from None
    if "candidate_labels" not in options and any(s.get("op") == "candidate_labels" and "candidate_labels" not in s
                                                 for s in pre):
        raise UsageError("a zero-shot bundle needs candidate labels for the job: --option candidate_labels=cat,dog "
                         "(or a JSON array)")
    return options


def _bar(total: int, show: bool | None):
    """A tqdm bar on stderr (shown on a terminal, or when asked), counting rows."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or show is False:
        return _NoBar()
    return tqdm(total=total, unit="row", file=sys.stderr, disable=None if show is None else False,
                dynamic_ncols=True, desc="batch")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ["ENGINES", "BatchResult", "run_batch"]
