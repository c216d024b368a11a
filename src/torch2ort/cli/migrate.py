"""``torch2ort migrate``: export, verify, optimise, verify, pack, check, benchmark and report, in one go."""

from __future__ import annotations

import argparse
import shlex
import sys

from torch2ort.cli.common import Repeatable, add_model_args, add_spec_args, make_console, model_options, spec_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "migrate",
        description="Run export → verify → optimize (optional) → verify → pack → check → bench → "
                    "report for MODEL and write OUTDIR/bundle (torch-free), OUTDIR/report.md, "
                    "OUTDIR/report.html and OUTDIR/evidence.json. A failing stage stops the run "
                    "with its exit code and still writes a partial report. See docs/migrate.md.")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="path/to/file.py:NAME, package.module:NAME, a TorchScript .pt, or hf:DIR (a local "
                        "transformers or sentence-transformers folder; inputs come from its tokenizer)")
    add_model_args(p)
    add_spec_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--task", help="hf: sources: feature-extraction, sentence-embedding, sequence-classification, "
                                  "token-classification, fill-mask (default: read from the folder)")
    p.add_argument("--samples", metavar="FILE.npz|DIR|FILE.txt",
                   help="real inputs to verify on (and calibrate with); a .txt file holds one text per line "
                        "for text models (default for hf: a built-in set of sentences)")
    p.add_argument("--n", type=int, default=4, help="seeded synthetic verification inputs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic inputs (default 0)")
    p.add_argument("--sweep", action=Repeatable, default=[], metavar="LABEL=v1,v2",
                   help="dynamic sizes to verify (default: the example size and two others per label)")
    p.add_argument("--optimize", default="none", metavar="none|auto|PASS[,PASS…]",
                   help="none (default), auto (try the variants worth trying, keep the fastest that passes), or "
                        "one chain of passes: graph, slim, transformer, fp16, int8-dynamic, int8-static, subpixel, "
                        "lift1d, pack-projections; "
                        "for a text-generation model: auto, int8-weight or int4-weight (weight-only, behind "
                        "generation gates)")
    p.add_argument("--accept", action="append", default=[], metavar="[OUTPUT:]METRIC>=X",
                   help="accuracy gate for optimised variants, e.g. cosine>=0.99 (default: per output kind)")
    p.add_argument("--name", help="model name in the bundle (default: from MODEL)")
    p.add_argument("--labels", metavar="FILE", help="class labels: one per line, or a JSON list")
    p.add_argument("--preprocess", metavar="PRESET|JSON", help="image, imagenet, text, or JSON steps (hf: automatic)")
    p.add_argument("--postprocess", metavar="PRESET|JSON",
                   help="softmax-topk, sigmoid-threshold, threshold, argmax, embeddings, or JSON steps")
    p.add_argument("--tokenizer", metavar="tokenizer.json", help="for --preprocess text (hf: automatic)")
    b = p.add_argument_group("benchmark")
    b.add_argument("--no-bench", action="store_true", help="skip the benchmark (the report says so)")
    b.add_argument("--batch", metavar="1,8", help="batch sizes to time (default: 1 and max(example, 8))")
    b.add_argument("--seconds", type=float, default=1.0, help="timed seconds per batch size and process (default 1)")
    b.add_argument("--repeats", type=int, default=2, help="A/B pairs of fresh processes (default 2)")
    b.add_argument("--threads", type=int, help="threads on both sides (default: physical cores)")
    b.add_argument("--peers", nargs="?", const="all", metavar="all|torch-compile,openvino",
                   help="also time torch.compile and OpenVINO (pip install 'torch2ort[peers]') on the same threads; "
                        "the report's 'what else you could use' line says where one was faster")
    g = p.add_argument_group("benchmark of a text-generation model (instead of batches)")
    g.add_argument("--prompt-tokens", metavar="128,512",
                   help="prompt lengths to time the first token at (default 128,512; capped by the model's positions)")
    g.add_argument("--new-tokens", type=int, default=32,
                   help="tokens generated per prompt; decode tokens/s is over those after the first (default 32)")
    g.add_argument("--genai-python", metavar="PYTHON",
                   help="the python of an environment with onnxruntime-genai, to time it too (its model builder on "
                        "the same folder); default $TORCH2ORT_GENAI_PYTHON; without one it is reported not measured")
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it holds an earlier migrate output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort import api
    from torch2ort.report import summary_lines

    console = make_console()
    result = api.migrate(
        args.model, args.output, task=args.task, samples=args.samples, n=args.n, seed=args.seed,
        sweep=args.sweep, optimize=args.optimize.strip(), accept=args.accept, name=args.name, labels=args.labels,
        preprocess=args.preprocess, postprocess=args.postprocess, tokenizer=args.tokenizer, bench=not args.no_bench,
        batch=args.batch, seconds=args.seconds, repeats=args.repeats, threads=args.threads, peers=args.peers,
        prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens, genai_python=args.genai_python,
        force=args.force,
        progress=_Display(console), command="torch2ort " + shlex.join(args.argv), **spec_options(args),
        **model_options(args))
    out = result.out
    console.print()
    for line in summary_lines(result.evidence):
        console.print(line, highlight=False, markup=False)
    console.print(f"report: {out / 'report.html'} (and report.md); evidence: {out / 'evidence.json'}"
                  + (f"; bundle: {out / 'bundle'}" if (out / "bundle").is_dir() else ""), markup=False)
    outcome = result.evidence.outcome
    if not result.passed:
        print(f"torch2ort migrate: error: stopped at {outcome.stopped_at}: {outcome.reason}", file=sys.stderr)
    return result.exit_code


class _Display:
    """A spinner with elapsed time per stage on a terminal; one plain line per stage in logs."""

    def __init__(self, console) -> None:
        self.console = console
        self.status = None
        self.count = 0

    def __call__(self, event: str, stage: str, info: dict) -> None:
        from rich.markup import escape

        if event == "log":
            self.console.print(f"    [dim]• {escape(info['line'])}[/dim]")
            return
        if event == "start":
            self.count += 1
            if self.console.is_terminal:
                self.status = self.console.status(f"[bold]{stage}[/bold] …")
                self.status.start()
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        mark = {"done": "[green]✓[/green]", "skipped": "[dim]–[/dim]", "failed": "[red]✗[/red]"}[event]
        text = info.get("error") if event == "failed" else info.get("summary", "")
        self.console.print(f"{mark} [bold]{stage:<16}[/bold] {info.get('seconds', 0):7.1f} s  {escape(text or '')}")

