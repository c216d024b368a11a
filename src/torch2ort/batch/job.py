"""A batch job: the output dataset folder, its shards, and resuming.

OUT (``embeddings.parquet``) is a Parquet *dataset*: a folder of ``part-NNNNN.parquet`` shards that
pyarrow, pandas, Polars, DuckDB, Spark and Ray read as one table, plus ``_torch2ort_batch.json``, the
job's identity (bundle, input fingerprint, batch and shard sizes, the call options). Readers skip ``_`` and ``.`` files.

- A shard is written to a hidden temp file and renamed, so a shard on disk is complete.
- A rerun of the same job skips the shards already there (resume).
- A different job into the same OUT is refused without ``--force``; a folder that is not a
  torch2ort batch output is never touched, ``--force`` or not.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch2ort.batch.inputs import Inputs
from torch2ort.batch.worker import shard_name
from torch2ort.errors import OutputExistsError, UsageError

MARKER = "_torch2ort_batch.json"


@dataclass
class Plan:
    bundle: str
    bundle_sha256: str
    input: str
    column: str | None
    inputs: str            # the inputs' fingerprint
    rows: int
    batch_size: int
    shard_rows: int
    options: dict = field(default_factory=dict)  # call options for every row (candidate_labels)

    @property
    def shards(self) -> list[tuple[int, int, int]]:
        """(index, start, stop) of every shard."""
        return [(i, lo, min(lo + self.shard_rows, self.rows))
                for i, lo in enumerate(range(0, self.rows, self.shard_rows))]

    def identity(self) -> dict:
        # no options: the identity earlier versions wrote, so their outputs still resume
        return {k: v for k, v in asdict(self).items() if k not in ("bundle", "input") and (k != "options" or v)}


def make_plan(bundle: str | Path, input_path: str | Path, column: str | None, inputs: Inputs,
              batch_size: int, shard_rows: int, options: dict | None = None) -> Plan:
    if batch_size < 1 or shard_rows < 1:
        raise UsageError(f"--batch-size ({batch_size}) and --shard-rows ({shard_rows}) must be >= 1")
    manifest = Path(bundle) / "torch2ort.json"
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""
    return Plan(str(Path(bundle).resolve()), sha, str(Path(input_path).resolve()), column, inputs.fingerprint(),
                len(inputs.sources), batch_size, max(shard_rows, batch_size), dict(options or {}))


def prepare_out(out: str | Path, plan: Plan, force: bool) -> list[tuple[int, int, int]]:
    """Create or reopen OUT for ``plan``; the shards still to compute."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputExistsError(f"{out} exists and is not a folder (a batch output is a Parquet dataset folder); "
                                "pick another -o")
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise OutputExistsError(f"{out} is not empty and has no {MARKER}, so it is not a torch2ort batch "
                                    "output; refusing to write there, even with --force")
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = None
        same = isinstance(previous, dict) and previous.get("identity") == plan.identity()
        if force or not same:
            if not force:
                raise OutputExistsError(f"{out} holds a different batch job (other bundle, inputs, --batch-size, "
                                        "--shard-rows or --option); pass --force to replace it, or pick another -o")
            shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".part-*.tmp"):  # a shard that a killed run left half-written
            stale.unlink()
        marker.write_text(json.dumps({"identity": plan.identity(), "bundle": plan.bundle, "input": plan.input},
                                     indent=2) + "\n")
    except OSError as exc:  # -o under a file, in /proc, read-only, …
        raise UsageError(f"cannot write the batch output {out}: {exc.strerror or exc}") from None
    return [s for s in plan.shards if not (out / shard_name(s[0])).is_file()]
