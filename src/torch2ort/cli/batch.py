"""``torch2ort batch``: predict a corpus (folder, text file, table column) into a Parquet dataset; torch-free."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch",
        description="Run a bundle over every input of INPUT and write one Parquet row per input (row, source, "
                    "outputs, error). INPUT: a folder of files (images, audio, .npy), a text file with one input per "
                    "line, or a Parquet/CSV/JSONL file with --column. OUT is a Parquet dataset folder of shards; a "
                    "rerun skips the shards already written. Corrupt inputs become error rows. See docs/scale.md.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("-o", "--output", metavar="OUT.parquet",
                   help="output dataset folder (default: <model name>.parquet here)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: threads in this process; ray: Ray Data actors (needs torch2ort[ray])")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--column", metavar="COL", help="the input column of a Parquet, CSV or JSONL INPUT")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="rows per model run (default 32)")
    p.add_argument("--shard-rows", type=int, default=1024, metavar="S",
                   help="rows per output shard, the unit of resuming and of Ray tasks (default 1024)")
    p.add_argument("--concurrency", type=int, metavar="K",
                   help="workers (local: threads; ray: actors; default: 1 locally, cluster CPUs // --threads on Ray)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="ONNX Runtime intra-op threads per worker (local default: cores // K; ray default: 1, "
                        "and each actor reserves T CPUs)")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a call option for every row, as predict --option takes it (VALUE is read as JSON when it "
                        "parses, else as text), e.g. candidate_labels=cat,dog for a zero-shot bundle or "
                        "aggregation_strategy=first for a token-classification one")
    p.add_argument("--providers", metavar="cuda,cpu", help="ONNX Runtime providers in order of preference")
    p.add_argument("--force", action="store_true", help="replace an OUT that holds a different batch job")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from torch2ort.batch import run_batch
    from torch2ort.cli.common import parse_options
    from torch2ort.runtime import manifest as mf

    options = parse_options(args.option)  # a malformed pair is refused before any bundle is read
    out = args.output
    if out is None:
        name = mf.read_manifest(Path(args.bundle))["name"]
        out = f"{mf.check_model_name(name)}.parquet"
    result = run_batch(args.bundle, args.input, out, engine=args.engine, column=args.column,
                       batch_size=args.batch_size, shard_rows=args.shard_rows, concurrency=args.concurrency,
                       threads=args.threads, address=args.address, force=args.force, providers=args.providers,
                       progress=False if args.no_progress else None, options=options)
    resumed = f", {result.skipped_shards} of {result.shards} shards already there" if result.skipped_shards else ""
    print(f"wrote {result.rows} rows ({result.errors} errors) to {result.out} in {result.seconds:.1f} s "
          f"({result.rows_per_s:.1f} rows/s){resumed}")
    return 0
