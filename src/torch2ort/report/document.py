"""The migration report as a list of blocks, built only from the typed evidence; rendered to Markdown and HTML.

A block is a tuple: ("h1"|"h2"|"h3"|"p", text), ("list", [text]), ("table", headers, rows),
("code", lang, text), ("figure", name, svg), ("banner", ok, text). Text may use `code` and
**bold**, which both renderers understand. Nothing here measures anything: a number that is not
in the evidence is not in the report.
"""

from __future__ import annotations

import math
import re
from typing import Any

from torch2ort.evidence import Evidence, GateVerdictInfo
from torch2ort.report import svg

Block = tuple


def _n(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.{digits}g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.2e}"
    return str(v)


def _cos(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.7f}" if v > 0.99 else f"{v:.4f}"


def _mb(b: float | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f} MB"


def summary_lines(ev: Evidence) -> list[str]:
    """Three lines: the parity verdict, the speed-up, the footprint; a fourth, what else you could use, when the
    bench timed peer runtimes."""
    peers = _peers_line(ev)
    return [_parity_line(ev), _speed_line(ev), _footprint_line(ev)] + ([peers] if peers else [])


_PEER_NAMES = {"openvino": "OpenVINO", "torch-compile": "torch.compile"}
_PEER_LABELS = {"openvino": "openvino", "torch-compile": "torch.compile"}


def _peers_line(ev: Evidence) -> str | None:
    """Measured evidence only: each peer's p50 against ORT's from the same A/B repeats, or why it was not timed."""
    b = ev.bench
    if not b or not b.peers:
        return None
    parts = []
    for name, status in b.peers.items():
        shown = _PEER_NAMES.get(name, name)
        ratios = b.ratios.get(f"onnxruntime vs {_PEER_LABELS.get(name, name)}", {})
        if not status.get("measured") or not ratios:
            parts.append(f"{shown}: {status.get('note', 'not measured')}")
            continue
        said = []
        for batch, r in ratios.items():  # r: peer p50 / ORT p50 per repeat
            if not r.stable:
                said.append(f"batch {batch}: {r.text()}")
            elif r.max < 1:
                said.append(f"FASTER than ONNX Runtime at batch {batch} (ORT takes {1 / r.median:.2f}× its time "
                            f"[{1 / r.max:.2f}–{1 / r.min:.2f}]), worth a try")
            elif r.min > 1:
                said.append(f"slower at batch {batch} (ORT {r.median:.2f}× faster [{r.min:.2f}–{r.max:.2f}])")
            else:
                said.append(f"level at batch {batch} ({r.median:.2f}× [{r.min:.2f}–{r.max:.2f}])")
        compile_s = status.get("compile_s")
        parts.append(f"{shown} " + "; ".join(said) + (f", compile {compile_s:.1f} s" if compile_s is not None else ""))
    return "what else you could use (timed on the same threads, p50): " + "; ".join(parts)


def _parity_line(ev: Evidence) -> str:
    v = ev.verify
    if not v:
        return "parity: not verified (the run stopped before verification)"
    out = ev.outcome
    worst = max((r.max_abs for r in v.parity.per_output), default=float("nan"))
    line = (f"parity: {'PASS' if v.passed else 'FAIL'}, ONNX fp32 vs PyTorch on {len(v.cases)} cases "
            f"(max abs {_n(worst)})")
    vo = ev.verify_optimized
    if vo:
        line += f"; shipped {vo.variant}: {_gate_text(vo.gate)}"
    check = ev.check
    if check:
        parts = [f"{k} {c.metric} {_cos(c.value) if c.metric == 'cosine' else _n(c.value)}"
                 for k, c in check.outputs.items()]
        first = next(iter(check.outputs.values()), None)
        ref = first.reference if first else "PyTorch"
        line += f"; bundle from {check.input}: {', '.join(parts)} vs {ref}"
    if not out.passed and out.stopped_at:
        line += f" — STOPPED at {out.stopped_at}"
    return line


def _gate_text(gate: GateVerdictInfo) -> str:
    state = "pass" if gate.passed else "FAIL"
    return state + " (" + ", ".join(f"{c.output} {c.metric} {_n(c.value, 5)} vs {c.gate}"
                                    for c in gate.checks) + ")"


def _speed_line(ev: Evidence) -> str:
    b = ev.bench
    if ev.model and ev.model.task == "text-generation":
        return _generation_line(ev)
    if not b or not b.ratios.get("onnxruntime"):
        return "speed-up: not measured" + ("" if b else " (the bench stage did not run)")
    ratios = b.ratios["onnxruntime"]
    parts = [f"{r.median:.2f}× at batch {batch} [{r.min:.2f}–{r.max:.2f}]" if r.stable else f"batch {batch}: {r.text()}"
             for batch, r in ratios.items()]
    return (f"speed-up: ONNX Runtime vs PyTorch, p50 latency, {', '.join(parts)} "
            f"({b.options.repeats} A/B pairs of fresh processes, {b.options.threads} threads each)")


def _fixed(v: float | None, digits: int = 1) -> str:
    """Milliseconds, tokens/s and MB as plain figures (1,690.4 rather than 1.69e+03)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}" if abs(v) >= 10 or digits == 0 else f"{v:.3g}"


def _kib_or_mb(b: float | None) -> str:
    return "-" if b is None else (f"{b / 1024:.1f} KiB" if b < 2**20 else _mb(b))


def _generation_line(ev: Evidence) -> str:
    g = ev.generation_bench
    if not g:
        return "speed-up: generation not measured (the bench stage did not run)"
    first = str(g.prompt_tokens[0])
    parts = []
    for peer in ("transformers", "onnxruntime-genai"):
        decode, ttft = (g.ratios.get(f"{w} vs {peer}", {}).get(first) for w in ("decode", "ttft"))
        if decode and ttft:
            parts.append(f"vs {peer}: decode {decode.text()}, first token {ttft.text()}")
        elif peer in g.sides and not g.sides[peer].measured:
            parts.append(f"{peer} not measured")
    ours = g.sides.get("torch2ort")
    tok_s = ours.decode_tok_s.get(first) if ours else None
    return (f"speed-up: the bundle decodes {_fixed(tok_s)} tok/s at {first} prompt tokens; " + "; ".join(parts)
            + f" ({g.repeats} fresh processes per side, {g.threads} threads each)")


def _footprint_line(ev: Evidence) -> str:
    f = ev.footprint
    if not f:
        return "footprint: not measured (no bundle was written)"
    rt, th = f.runtime, f.torch
    ratio = th.bytes / rt.bytes if rt.bytes else float("nan")
    return (f"footprint: bundle {_mb(f.bundle_bytes)}; its runtime installs {_mb(rt.bytes)} "
            f"({', '.join(list(rt.packages)[:3])}, …) vs {_mb(th.bytes)} for {' + '.join(f.torch_roots)} "
            f"({ratio:.1f}× more), measured in this environment")


def model_title(source: str) -> str:
    """The model's name, for titles: ``all-MiniLM-L6-v2`` for ``hf:/models/all-MiniLM-L6-v2/``,
    ``model.py:AttnMILResNet`` for ``/venv/site-packages/examples/cough/model.py:AttnMILResNet``,
    ``pkg.nets:build`` as given, a TorchScript archive's file name; the full source stays in the body."""
    if source.startswith("hf:"):
        return _file_name(source[3:]) or source
    path, sep, name = source.rpartition(":")
    if sep and re.fullmatch(r"[\w.]+", path) and not path.endswith(".py"):  # package.module:NAME
        return source
    if sep and path.endswith(".py"):
        return f"{_file_name(path)}:{name}"
    return _file_name(source)


def _file_name(path: str) -> str:
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] or path  # a Windows path names its file after a backslash


def build(ev: Evidence) -> list[Block]:
    model = ev.model.source if ev.model else "model"
    name = (ev.bundle.path if ev.bundle else None) or model
    out = ev.outcome
    blocks: list[Block] = [("h1", f"Migration report: {model_title(model)}")]
    if out.passed:
        blocks.append(("banner", True, f"PASSED: every stage ran and every check held. Bundle: `{name}`"))
    else:
        blocks.append(("banner", False, f"STOPPED at stage **{out.stopped_at}** (exit {out.exit_code}): "
                                        f"{out.reason}"))
    blocks.append(("list", summary_lines(ev)))
    blocks += _stages(ev) + _graph(ev) + _parity(ev) + _optimize(ev) + _check(ev) + _performance(ev)
    blocks += _cold(ev) + _footprint(ev) + _deploy(ev) + _reproduce(ev)
    return blocks


def _stages(ev: Evidence) -> list[Block]:
    rows = [[s.name, s.status, f"{s.seconds:.1f} s", s.error or s.summary or ""] for s in ev.stages]
    return [("h2", "Stages"), ("table", ["stage", "status", "time", "result"], rows)]


def _graph(ev: Evidence) -> list[Block]:
    ex = ev.export
    blocks: list[Block] = [("h2", "What is in the ONNX graph, and what is not")]
    m = ev.model
    if m:
        blocks.append(("p", f"Source: `{m.source}` ({m.kind}" + (f", task {m.task}" if m.task else "")
                       + f"), {m.parameters / 1e6:.2f} M parameters ({m.parameter_mb:.1f} MB of weights)."))
        blocks.append(("list", m.notes))
    if not ex:
        return blocks + [("p", "The model was not exported.")]
    g = ex.graph
    top = ", ".join(f"{op} ×{c}" for op, c in list(g.ops.items())[:12])
    blocks.append(("p", f"Exported with the **{ex.exporter}** exporter ({ex.why}) at opset {g.opset}: "
                        f"{g.nodes} nodes, {g.initializers} weight tensors, {g.mb:.1f} MB. "
                        f"Most used ops: {top}."))
    if ex.attempts:
        blocks.append(("list", [f"{k} exporter failed first: {v}" for k, v in ex.attempts.items()]))
    rows = [["input", t.name, t.dtype, str(t.shape)] for t in g.inputs]
    rows += [["output", t.name, t.dtype, str(t.shape)] for t in g.outputs]
    blocks.append(("table", ["", "name", "dtype", "shape (strings are dynamic dims)"], rows))
    blocks += _outside(ev)
    pool = ev.pooling
    if pool:
        rows = [[c, _n(v.max_abs), _cos(v.min_cosine), "**chosen**" if c == pool.chosen else ""]
                for c, v in pool.candidates.items()]
        blocks += [("h3", "Where sentence-transformers pooling runs"),
                   ("p", f"Both placements were exported, packed and run from raw text ({pool.texts} texts) and "
                         f"compared with {pool.reference}. Rule: {pool.rule}."),
                   ("table", ["pooling + normalize in", "max abs error", "min cosine", ""], rows)]
    return blocks


def _describe_step(step: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in step.items() if k != "op")
    return f"`{step['op']}`" + (f" ({params})" if params else "")


def _outside(ev: Evidence) -> list[Block]:
    b = ev.bundle
    if not b:
        return []
    items = []
    if b.preprocess:
        steps = " → ".join(_describe_step(s) for s in b.preprocess)
        items.append(f"Preprocessing, in the torch-free runtime: {steps}")
    else:
        names = ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in b.inputs)
        items.append(f"No preprocessing is declared: **your code must still build the input arrays** ({names}).")
    if b.postprocess:
        items.append("Postprocessing, in the runtime: " + " → ".join(_describe_step(s) for s in b.postprocess))
    else:
        items.append("No postprocessing: the graph's outputs are the answer.")
    if b.labels:
        items.append(f"{len(b.labels)} class labels ship in the manifest.")
    if b.preprocess:
        items.append("Python you still run around the model: none beyond `torch2ort.runtime` "
                     "(requirements below; no torch).")
    return [("h3", "Outside the graph"), ("list", items)]


def _parity(ev: Evidence) -> list[Block]:
    v = ev.verify
    if not v:
        return []
    p = v.parity
    what = ("the prefill and each cached decode step, both sides fed transformers' greedy tokens"
            if v.generation else "synthetic, real samples and a sweep over the dynamic dims")
    blocks: list[Block] = [
        ("h2", "Parity: PyTorch vs ONNX Runtime (fp32 export)"),
        ("p", f"{len(v.cases)} cases ({what}), every output "
              f"compared with allclose(atol={p.atol:g}, rtol={p.rtol:g}). Verdict: "
              f"**{'PASS' if v.passed else 'FAIL'}**."),
    ]
    rows = [[r.output, r.dtype, str(r.cases), str(r.failed), _n(r.max_abs), _n(r.max_rel),
             _cos(r.min_cosine), _n(r.top1)] for r in p.per_output]
    blocks.append(("table", ["output", "dtype", "cases", "failed", "max abs", "max rel", "min cosine", "top-1 agree"],
                   rows))
    failures = list(p.graph_issues) + list(p.errors)
    if failures:
        blocks.append(("list", failures))
    by_case: dict[str, dict] = {}
    for c in p.comparisons:
        row = by_case.setdefault(c.case, {"kind": c.kind, "max_abs": 0.0, "cos": 1.0, "ok": True})
        row["max_abs"] = max(row["max_abs"], c.max_abs if c.max_abs == c.max_abs else 0.0)
        if c.cosine is not None and c.cosine == c.cosine:
            row["cos"] = min(row["cos"], c.cosine)
        row["ok"] = row["ok"] and c.passed
    rows = []
    for case in v.cases:
        r = by_case.get(case.name, {"kind": case.kind, "max_abs": None, "cos": None, "ok": False})
        shapes = "; ".join(f"{k} {s}" for k, s in case.shapes.items())
        rows.append([case.name, case.kind, shapes, _n(r["max_abs"]), _cos(r["cos"]),
                     "pass" if r["ok"] else "**FAIL**"])
    title = "Every step: prefill, then cached decode" if v.generation else \
        "Every case, including the sweep over dynamic dims"
    blocks += [("h3", title),
               ("table", ["case", "kind", "input shapes", "max abs (all outputs)", "min cosine", ""], rows)]
    return blocks + _greedy(v.generation)


def _greedy(gen: dict | None) -> list[Block]:
    """A decoder's greedy-token check against transformers' generate, and its cache size per token."""
    if not gen:
        return []
    rows = []
    for g in gen["greedy"]:
        div = g.get("divergence")
        first = f"step {div['step']}: transformers {div['expected']}, onnxruntime {div['got']}" if div else "-"
        rows.append([str(g["prompt"]), g["how"], str(g["tokens"]), "yes" if g["identical"] else "**NO**", first])
    blocks: list[Block] = [
        ("h3", "Greedy tokens vs transformers generate(do_sample=False)"),
        ("p", f"{gen['new_tokens']} new tokens per prompt from the bundle's own generation loop, each prompt alone and "
              f"all batched (left padding). Smallest top-1 margin {_n(gen['min_top1_margin'])} against a largest "
              f"logit error of {_n(gen['max_logit_error'])}. KV cache: "
              f"{gen.get('kv_cache_bytes_per_token', 0) / 1024:.1f} KiB per token per sequence (fp32 keys and "
              "values of every layer)."),
        ("table", ["prompt", "run", "tokens", "identical", "first divergence"], rows),
        ("list", [f"prompt {i}: `{p[:60]!r}`" for i, p in enumerate(gen["prompts"])]),
    ]
    if gen.get("note"):
        blocks.append(("p", f"Note: {gen['note']}."))
    return blocks


def _gate_cases(gc: dict) -> str:
    if not gc or not gc.get("cases"):
        return ""
    return f", judged on {_names(gc['cases'])}: {gc.get('why', '')}"


def _confirm_cases(cc: dict) -> str:
    if not cc or not cc.get("cases"):
        return ""
    return (f" The chosen variant was then confirmed on {_names(cc['cases'])} that took no part in choosing it "
            f"({cc.get('why', '')}); one that failed there was dropped and the next choice confirmed in turn.")


def _names(cases: list[str]) -> str:
    """``3 case(s) (a, b, c)``, or the first few and a count when there are many."""
    shown = ", ".join(cases[:6]) + (f", … {len(cases) - 6} more" if len(cases) > 6 else "")
    return f"{len(cases)} case(s) ({shown})"


def _noise(b) -> str:
    n = b.noise or {}
    if not n:
        return ""
    return (f" Machine load during the run: load average {n.get('loadavg_before')} → {n.get('loadavg_after')} on "
            f"{n.get('cores')} cores, CPU steal {n.get('steal_pct')}%.")


def _skipped(ev: Evidence, name: str, otherwise: str) -> str:
    """Why a stage left no section: its summary when it was skipped, else ``otherwise``."""
    stage = ev.stage(name)
    return stage.summary if stage and stage.status == "skipped" else otherwise


def _optimize(ev: Evidence) -> list[Block]:
    o = ev.optimize
    if not o:
        text = _skipped(ev, "optimize", "did not run")
        return [("h2", "Optimisation variants"), ("p", f"Optimisation {text}.")]
    gates = ", ".join(f"`{g.text()}` ({g.why})" for g in o.gates.values())
    rows = []
    for r in o.table:
        unstable = "" if r.stable else " (unstable)"
        rows.append([("→ " if r.chosen else "") + r.variant, r.gate, r.metric, _n(r.p50_ms),
                     _n(r.p99_ms), "-" if r.vs_torch is None else f"{r.vs_torch:.2f}×{unstable}",
                     "-" if r.vs_fp32 is None else f"{r.vs_fp32:.2f}×{unstable}", _n(r.size_mb),
                     {True: "✓", False: "✗"}.get(r.confirmed, "-"), "★" if r.pareto else "", r.why])
    decoder = o.extra.get("decoder")
    if decoder:
        lim = decoder.get("limits", {})
        rows = [[("→ " if r.chosen else "") + r.variant, r.gate, r.metric, _n(r.p50_ms),
                 "-" if r.vs_fp32 is None else f"{r.vs_fp32:.2f}×", _n(r.size_mb), r.why] for r in o.table]
        fused = next((v for v in decoder.get("variants", []) if v.get("details", {}).get("fused_ops")), None)
        fusion = []
        if fused:
            ops = ", ".join(f"{n} {op}" for op, n in fused["details"]["fused_ops"].items())
            par = fused.get("parity") or {}
            verdict = ("not re-verified against transformers" if not par.get("checked") else
                       f"re-verified against transformers: {'pass' if par.get('passed') else '**FAIL**'}, logits max "
                       f"abs {_n(par.get('max_abs'))}, greedy tokens "
                       f"{'identical' if par.get('greedy_identical') else '**differ**'}")
            fusion = [("p", f"Decoder fusion (onnxscript's ORT fusions plus torch2ort's rotary rule) wrote {ops}; "
                            f"the fused graph was {verdict} (prefill and cached decode steps, each prompt alone and "
                            "batched), before any gate.")]
        return [("h2", "Optimisation variants (decoder fusion and weight-only quantisation)"),
                ("p", f"Each variant (ONNX Runtime's MatMulNBitsQuantizer: block size and accuracy level in its name) "
                      f"was held to generation gates against the fp32 export: next-token top-1 agreement >= "
                      f"{lim.get('top1')} under teacher forcing and a perplexity ratio <= {lim.get('ppl_ratio')}, both "
                      f"on {o.cases} tokens of {decoder['text']} (rows of {decoder.get('chunk')}), and greedy "
                      f"agreement >= {lim.get('greedy')} (the share of fp32's 32 greedy tokens reproduced before the "
                      f"first divergence, averaged over the prompts); a variant that loops where fp32 does not is "
                      f"refused. Timing: "
                      f"{decoder['timing']}. → the variant shipped. {o.message}."),
                *fusion,
                ("table", ["variant", "gates", "metrics", "ms/token", "vs fp32", "MB", "why"], rows)]
    blocks: list[Block] = [
        ("h2", "Optimisation variants"),
        ("p", f"Each variant was re-verified against PyTorch on {o.cases} cases and held to its gate: {gates}"
              f"{_gate_cases(o.gate_cases)}. Agreement gates (top-1, decision, sign) pass on the one-sided 95% lower "
              f"bound of the agreement, not the point estimate: the metric column shows both, and n."
              f"{_confirm_cases(o.confirm_cases)} "
              f"Int8 calibration: {o.calibration}. Passing variants were timed in fresh processes (latency at "
              f"the benchmark batch, from short runs meant for choosing; the Performance section's longer run is "
              f"the figure to quote). ★ marks the Pareto front; → the variant shipped. {o.message}."),
        ("table", ["variant", "gate", "worst metric", "p50 ms", "p99 ms", "vs torch", "vs fp32", "MB", "confirmed",
                   "", "why it failed"], rows),
    ]
    vo = ev.verify_optimized
    if vo:
        blocks.append(("p", f"The written file (`{vo.variant}`) was read back from disk and verified again on "
                            f"{len(vo.parity.cases)} cases: {_gate_text(vo.gate)}."))
    return blocks


def _check(ev: Evidence) -> list[Block]:
    c = ev.check
    if not c:
        return []
    rows = [[k, v.reference, _n(v.max_abs), _cos(v.min_cosine),
             f"{v.metric} {_cos(v.value) if v.metric == 'cosine' else _n(v.value)}", v.gate,
             "pass" if v.passed else "**FAIL**"] for k, v in c.outputs.items()]
    call = "generate" if c.results == ["token_ids", "text"] else "predict"
    return [("h2", "End to end: the bundle from raw input, without torch"),
            ("p", f"`Bundle.load(\"bundle\").{call}(...)` ran on {c.input} in a separate Python process where "
                  f"`import torch` raises (torch imported: {c.torch_imported}). It returned "
                  f"{', '.join(f'`{r}`' for r in c.results)}."),
            ("table", ["output", "compared with", "max abs", "min cosine", "gated metric", "gate", ""], rows)
            ] + _mask(c) + _raw_steps(c)


def _mask(c) -> list[Block]:
    """The bundle's segmentation of the checked file as a colour mask (PASCAL VOC palette, docs/hf.md)."""
    if not c.mask or not c.mask.startswith("data:image/png;base64,"):
        return []
    return [("p", "The bundle's segmentation of that file, as a colour mask (PASCAL VOC palette; "
                  "`torch2ort predict --mask-dir DIR` writes it at full size, over the image too):"),
            ("figure", "mask", svg.image(c.mask))]


def _raw_steps(c) -> list[Block]:
    """How the raw-file pipeline was judged: fused preprocess module, and per-step drift (information, not gated)."""
    blocks: list[Block] = []
    if c.preprocess_module == "fused":
        blocks.append(("p", "The `--preprocess-module` is fused with the model: one ONNX graph computes "
                            "preprocess ∘ model, exported and verified like any model; the runtime steps before it "
                            "run in numpy in both the bundle and the torch reference."))
    if c.steps:
        rows = [[d.step, d.ours, d.reference or "–", _n(d.max_abs) if d.max_abs is not None else "–",
                 _n(d.rms) if d.rms is not None else "–", d.note] for d in c.steps]
        blocks += [("p", f"Per-step drift on `{c.files[0].rsplit('/', 1)[-1] if c.files else c.input}`, against "
                         "independent implementations (recorded, not gated):"),
                   ("table", ["step", "ours", "reference", "max abs", "rms", "note"], rows)]
    return blocks


def _performance(ev: Evidence) -> list[Block]:
    b = ev.bench
    if ev.model and ev.model.task == "text-generation":
        return _generation_performance(ev)
    if not b:
        return [("h2", "Performance"), ("p", "Not measured in this run.")]
    m, o = b.machine, b.options
    blocks: list[Block] = [
        ("h2", "Performance"),
        ("p", f"Measured on {m.cpu} ({m.physical_cores} physical / {m.logical_cores} logical cores, "
              f"{m.system}), {o.threads} threads on both sides, each backend in its own fresh processes, "
              f"{o.repeats} A/B pairs in alternating order, {o.seconds} s per batch size after {o.warmup} "
              f"warm-up calls. torch {b.versions.get('torch')}, onnxruntime {b.versions.get('onnxruntime')}. "
              f"Model file timed: `{b.onnx.rsplit('/', 1)[-1]}`.{_noise(b)}"),
    ]
    rows = [[r.backend, str(r.batch), _n(r.p50), _n(r.p90), _n(r.p99), _n(r.mean),
             f"{r.throughput:.1f}", f"{r.peak_rss_mb:.0f}"] for r in b.rows]
    blocks.append(("table", ["backend", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "items/s", "peak RSS MB"],
                   rows))
    ratios = b.ratios.get("onnxruntime", {})
    series = []
    for batch in map(str, o.batches):
        for label in sorted({r.label for r in b.runs}, reverse=True):
            samples = [s for r in b.runs if r.label == label and batch in r.batches
                       for s in r.batches[batch].samples_ms]
            series.append((f"{label}, batch {batch}", samples))
    box = svg.latency_boxes(series, "Latency distributions (all calls, all repeats)")
    bars = svg.speedup_bars([(f"batch {k}" + ("" if v.stable else " (unstable)"), v.median, v.min, v.max)
                             for k, v in ratios.items()], "Speed-up per batch size (median and range of the A/B pairs)")
    unstable = [f"batch {k}: {v.text()}" for k, v in ratios.items() if not v.stable]
    if unstable:
        blocks.append(("p", "**Unstable** (repeats disagree, so no speed-up is quoted): " + "; ".join(unstable)))
    if box:
        blocks.append(("figure", "latency", box))
    if bars:
        blocks.append(("figure", "speedup", bars))
    if b.overhead:
        ov = b.overhead
        blocks.append(("p", f"ONNX Runtime's Python/binding overhead: {ov.overhead_ms:.4f} ms per call "
                            f"({ov.overhead_pct:.1f}% of the call), from a separate profiled run. "
                            + go_would_save(ov.overhead_ms, ov.overhead_pct)))
    return blocks


_GEN_SIDES = ("torch2ort", "transformers", "onnxruntime-genai")


def _generation_performance(ev: Evidence) -> list[Block]:
    """A decoder's bench: TTFT per prompt length, decode tokens/s and peak RSS per side, the speed-ups, the cache."""
    g = ev.generation_bench
    if not g:
        why = _skipped(ev, "bench", "the bench stage did not run")
        return [("h2", "Performance: generation"), ("p", f"Not measured in this run ({why}).")]
    lengths = [str(n) for n in g.prompt_tokens]
    m = g.machine
    where = f" on {m.cpu} ({m.physical_cores} physical / {m.logical_cores} logical cores)" if m else ""
    blocks: list[Block] = [
        ("h2", "Performance: generation"),
        ("p", f"Measured{where}, {g.threads} intra-op threads on every side, each side in its own fresh process per "
              f"repeat ({g.repeats} repeats, alternating order), greedy, on seeded random prompts of "
              f"{', '.join(lengths)} tokens, {g.new_tokens} new tokens each (EOS held back). Time to first token is "
              f"the prefill plus the first chosen token; decode tokens/s is over the {g.new_tokens - 1} steps after "
              f"it; peak RSS is the side's whole process. Medians over the repeats.{_noise(g)}"
              + (f" Prompt lengths: {g.capped}." if g.capped else "")),
    ]
    rows = []
    for name in _GEN_SIDES:
        side = g.sides.get(name)
        if side is None or not side.measured:
            continue
        rows.append([name, *(_fixed(side.ttft_ms.get(k)) for k in lengths),
                     *(_fixed(side.decode_tok_s.get(k)) for k in lengths), _fixed(side.peak_rss_mb, 0)])
    blocks.append(("table", ["side", *(f"TTFT {k} (ms)" for k in lengths), *(f"decode tok/s @{k}" for k in lengths),
                             "peak RSS MB"], rows))
    ratios = []
    for peer in ("transformers", "onnxruntime-genai"):
        for what in ("ttft", "decode"):
            for k, r in g.ratios.get(f"{what} vs {peer}", {}).items():
                ratios.append([f"{'time to first token' if what == 'ttft' else 'decode'} vs {peer}", k, r.text()])
    if ratios:
        blocks += [("p", "Speed-ups of the bundle: the other side's time over ours, one ratio per repeat (> 1: the "
                         "bundle is faster); median [range]. *Unstable* marks ratios whose repeats disagree widely "
                         "or whose decode steps jitter; those are not quoted as results."),
                   ("table", ["speed-up", "prompt tokens", "ratio"], ratios)]
    blocks.append(("list", [f"{name}: {g.sides[name].note}" for name in _GEN_SIDES if name in g.sides]))
    kv = g.kv_cache
    if kv:
        blocks.append(("p", f"KV cache: {kv['bytes_per_token'] / 1024:.1f} KiB per token per sequence "
                            f"({kv['dtype']} keys and values: 2 × {kv['layers']} layers × {kv['kv_heads']} KV heads × "
                            f"{kv['head_dim']}); {_kib_or_mb(kv.get('bytes_at_longest'))} per sequence at the longest "
                            "prompt plus its new tokens."))
    return blocks


def go_would_save(overhead_ms: float, overhead_pct: float) -> str:
    """What a rewrite of the caller in Go or C++ could gain at most: the binding overhead, and no more."""
    if not 0 <= overhead_pct < 100:
        return ""
    bound = 100.0 / (100.0 - overhead_pct)
    return (f"What would Go save? A client in Go or C++ calling the same ONNX Runtime could save at most "
            f"{overhead_ms:.4f} ms per call ({overhead_pct:.1f}% of the call): at most {bound:.3f}× faster, "
            "since the model's own run (kernels, threads) is the same C++ in every language.")


def _cold(ev: Evidence) -> list[Block]:
    b = ev.bench
    if not b or not b.cold:
        return []
    rows = [[k, *(f"{x:.3f}" for x in (c.import_s, c.load_s, c.first_inference_s, c.total_s, c.process_wall_s))]
            for k, c in b.cold.items()]
    return [("h2", "Cold start"),
            ("p", "A fresh process that imports the backend, loads the model and runs once; seconds, median over "
                  "repeats. Process wall includes interpreter start-up, as seen by the parent."),
            ("table", ["backend", "import", "load", "first inference", "total", "process wall"], rows)]


def _footprint(ev: Evidence) -> list[Block]:
    f, b = ev.footprint, ev.bundle
    if not f or not b:
        return []
    rt, th = f.runtime, f.torch
    rows = [["the bundle folder", _mb(f.bundle_bytes), ", ".join(sorted(b.files))],
            ["its runtime (requirements.txt)", _mb(rt.bytes),
             ", ".join(f"{k} {v / 2**20:.1f}" for k, v in list(rt.packages.items())[:6])],
            [" + ".join(f.torch_roots) + " (what the PyTorch side needs)", _mb(th.bytes),
             ", ".join(f"{k} {v / 2**20:.1f}" for k, v in list(th.packages.items())[:6])]]
    blocks: list[Block] = [("h2", "Footprint"),
                           ("p", f"Sizes are {f.method}."),
                           ("table", ["what", "size", "largest parts (MB)"], rows),
                           ("code", "text", b.requirements.strip())]
    missing = rt.missing + th.missing
    if missing:
        blocks.append(("p", f"Not installed here, so not counted: {', '.join(missing)}."))
    return blocks


def _deploy(ev: Evidence) -> list[Block]:
    b = ev.bundle
    if not b:
        return []
    text = bool(b.preprocess) and b.preprocess[0]["op"] == "tokenize"
    image = bool(b.preprocess) and b.preprocess[0]["op"] == "load_image"
    if ev.model and ev.model.task == "text-generation":
        call = 'bundle.generate(["def fib(n):"], max_new_tokens=32)   # .token_ids, .text; stream() too'
        cli = 'torch2ort predict bundle --text "def fib(n):" --max-new-tokens 32   # streams the new text'
    elif text:
        call, cli = 'bundle.predict(["first text", "second text"])', 'torch2ort predict bundle --text "first text"'
    elif image:
        call = 'bundle.predict("photo.jpg")'
        cli = f"torch2ort predict bundle --input {b.inputs[0].name}=@photo.jpg"
    elif b.preprocess and b.preprocess[0]["op"] in ("load_audio", "load_signal"):
        audio = b.preprocess[0]["op"] == "load_audio"
        first = "recording.wav" if audio else "record.hea"
        call = f'bundle.predict("{first}")    # or a list of files: one batch, padded, with masks'
        cli = f"torch2ort predict bundle --input {'audio' if audio else 'signal'}=@{first}"
    else:
        call = "bundle.predict({" + ", ".join(f'"{t.name}": np.load("{t.name}.npy")' for t in b.inputs) + "})"
        cli = "torch2ort predict bundle " + " ".join(f"--input {t.name}={t.name}.npy" for t in b.inputs)
    py = ("# pip install -r bundle/requirements.txt   (no torch)\nimport numpy as np\n"
          "from torch2ort.runtime import Bundle\n\n"
          f'bundle = Bundle.load("bundle")      # verifies every sha256 first\nout = {call}\n'
          "print({k: getattr(v, 'shape', v) for k, v in out.items()})")
    return [("h2", "Deploy it"), ("code", "python", py),
            ("code", "bash", f"{cli}\ntorch2ort serve bundle --port 8000   # KServe v2 / Open Inference Protocol")]


def _reproduce(ev: Evidence) -> list[Block]:
    cmd = ev.command or "(called from Python: see options below)"
    return [("h2", "Reproduce"), ("code", "bash", cmd),
            ("p", f"torch2ort {ev.torch2ort}, " + ", ".join(f"{k} {x}" for k, x in ev.versions.items() if x)
                  + f"; Python {ev.machine.python}; started {ev.started}, finished {ev.finished}. "
                  "Every figure above is in `evidence.json`, measured in this run.")]
