"""Text generation timed side by side: the packed bundle, transformers ``generate`` and onnxruntime-genai.

Each side runs in fresh processes (``generate_worker.py``), one per repeat, in alternating order, on the same
intra-op thread count and the same seeded prompts. It reports per prompt length the time to first token and
decode tokens/s, and each process's peak RSS; medians over repeats, and ratios over the repeats' pairs, marked
*unstable* when they disagree (``stats.Ratio``).

onnxruntime-genai pins its own onnxruntime, so it lives in another Python environment: ``genai_python`` (or
``$TORCH2ORT_GENAI_PYTHON``) names that interpreter. Its model builder writes the model from the same HF folder
into the work dir; without an interpreter the side is *not measured*, and the result says why and how to enable it.

Example::

    result = bench_generation("out/bundle", "hf-folder", work, GenerateBenchOptions(prompt_tokens=[128, 512]))
    result["sides"]["torch2ort"]["decode_tok_s"]["128"], result["ratios"]["decode vs transformers"]["128"]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from torch2ort import values as V
from torch2ort._env import machine_info, noise_between, noise_snapshot, physical_cores, versions
from torch2ort.benchmark.stats import Ratio, jitter
from torch2ort.errors import UsageError

WORKER = Path(__file__).with_name("generate_worker.py")
GENAI_ENV = "TORCH2ORT_GENAI_PYTHON"
GENAI_HOW = ("onnxruntime-genai pins its own onnxruntime, so it needs its own environment: `python -m venv genai && "
             "genai/bin/pip install onnxruntime-genai torch transformers`, then `--genai-python genai/bin/python` "
             f"(or ${GENAI_ENV})")
OURS, BASELINE, GENAI = "torch2ort", "transformers", "onnxruntime-genai"


@dataclass
class GenerateBenchOptions:
    prompt_tokens: list[int] = field(default_factory=lambda: [128, 512])  # capped by the model's positions
    new_tokens: int = 32                    # per prompt; decode tok/s is over the steps after the first
    repeats: int = 2                        # fresh processes per side
    threads: int | None = None              # default: physical cores, the same on every side
    genai_python: str | None = None         # an interpreter with onnxruntime_genai; default $TORCH2ORT_GENAI_PYTHON
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        self.prompt_tokens = V.sizes("--prompt-tokens", self.prompt_tokens, 1 << 20)
        self.new_tokens = V.count("--new-tokens", self.new_tokens, 2, 1 << 16)
        self.repeats = V.count("--repeats", self.repeats, 1, V.MAX_REPEATS)
        self.threads = V.optional_count("--threads", self.threads, 1, V.MAX_THREADS)
        self.timeout_s = V.number("timeout_s", self.timeout_s, 1.0, 86_400.0)
        self.genai_python = genai_python(self.genai_python)


def genai_python(path: str | os.PathLike | None) -> str | None:
    """The interpreter for the onnxruntime-genai side: ``path``, else $TORCH2ORT_GENAI_PYTHON, else None.
    One that is not an executable file is a usage error, said in one line."""
    flag = "--genai-python"
    if path is None:  # an empty variable counts as unset
        path, flag = os.environ.get(GENAI_ENV) or None, f"${GENAI_ENV}"
    if path is None:
        return None
    if path == "":
        raise UsageError("--genai-python: give the path of a Python interpreter with onnxruntime-genai")
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"--genai-python {path!r:.40}: must be the path of a Python interpreter")
    p = Path(path).expanduser()
    if not p.is_file() or not os.access(p, os.X_OK):
        raise UsageError(f"{flag} {str(path)[:200]}: not an executable file; give the python of an environment "
                         "with onnxruntime-genai installed")
    return str(p)


def genai_version(python: str) -> str:
    """onnxruntime-genai's version under ``python``; a one-line usage error when it cannot be imported there."""
    code = "import onnxruntime_genai as og, sys; sys.stdout.write(og.__version__)"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--genai-python {python}: could not run it ({type(exc).__name__})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
        raise UsageError(f"--genai-python {python}: onnxruntime_genai does not import there ({last}); "
                         + GENAI_HOW)
    return proc.stdout.strip()


def prompt_lengths(requested: list[int], max_positions: int | None, new_tokens: int) -> tuple[list[int], str]:
    """The prompt lengths to time, each capped so prompt plus new tokens fit the model's positions; and a note
    saying what was capped (empty when nothing was)."""
    if not max_positions:
        return list(requested), ""
    room = max_positions - new_tokens
    if room < 1:
        raise UsageError(f"--new-tokens {new_tokens}: the model has only {max_positions} positions")
    lengths = list(dict.fromkeys(min(n, room) for n in requested))
    capped = [n for n in requested if n > room]
    note = (f"{', '.join(map(str, capped))} capped to {room}: the model has {max_positions} positions and each run "
            f"adds {new_tokens} tokens") if capped else ""
    return lengths, note


def seeded_prompts(lengths: list[int], vocab: int, skip: list[int]) -> dict[str, list[int]]:
    """Seeded random token ids per length, from the first 256 ids (bytes in byte-level vocabularies), no EOS."""
    rng = np.random.default_rng(0)
    pool = [i for i in range(min(vocab, 256)) if i not in set(skip)]
    return {str(n): [pool[i] for i in rng.integers(0, len(pool), n)] for n in lengths}


def kv_cache(info: dict) -> dict:
    """What the cache grows by per token of one sequence: keys and values of every layer in the graph's dtype."""
    width = {"float32": 4, "float16": 2, "bfloat16": 2}.get(str(info.get("dtype", "float32")), 4)
    per_token = 2 * int(info["layers"]) * int(info["kv_heads"]) * int(info["head_dim"]) * width
    return {"bytes_per_token": per_token, "dtype": str(info.get("dtype", "float32")), "layers": int(info["layers"]),
            "kv_heads": int(info["kv_heads"]), "head_dim": int(info["head_dim"])}


def build_genai(python: str, model_dir: Path, out: Path, precision: str, timeout_s: float) -> str | None:
    """onnxruntime-genai's model builder on the HF folder into ``out``: None when done, else why it failed."""
    cache = out.with_name(out.name + "-cache")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.run([python, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(out),
                               "-p", precision, "-e", "cpu", "-c", str(cache)], capture_output=True, text=True,
                              env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"its model builder took over {timeout_s:.0f} s"
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0 or not (out / "genai_config.json").is_file():
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip() and "it/s" not in ln]
        return "its model builder refused this model: " + (lines[-1][:200] if lines else f"exit {proc.returncode}")
    return None


def genai_precision(variant: str) -> str:
    """The builder precision that matches the shipped variant: int4 weights for an int4 bundle, else fp32."""
    return "int4" if "int4" in variant else "fp32"


def _spawn(python: str, cfg: dict, work: Path, timeout_s: float) -> dict:
    n = len(list(work.glob("gen-cfg-*.json")))
    cfg_path, out_path = work / f"gen-cfg-{n}.json", work / f"gen-out-{n}.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"]), "HF_HUB_OFFLINE": "1"}
    if cfg["side"] != GENAI:  # the torch2ort this process runs, whether installed or on PYTHONPATH
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    start = time.perf_counter()
    try:
        proc = subprocess.run([python, "-P", str(WORKER), str(cfg_path), str(out_path)], capture_output=True,
                              text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise UsageError(f"the {cfg['side']} generation process ran past {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not out_path.is_file():
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[:400]
        raise UsageError(f"the {cfg['side']} generation process failed (exit {proc.returncode}): {tail}")
    result = json.loads(out_path.read_text())
    if "error" in result:
        raise UsageError(f"the {cfg['side']} generation side failed: {result['error']}")
    return result | {"process_wall_s": time.perf_counter() - start}


def bench_generation(bundle: str | Path, model_dir: str | Path, work: str | Path, opts: GenerateBenchOptions,
                     variant: str = "fp32", log: Callable[[str], None] = lambda line: None) -> dict:
    """Time the three sides; returns the ``generation_bench`` evidence section (a plain dict)."""
    bundle, model_dir, work = Path(bundle), Path(model_dir), Path(work)
    manifest = json.loads((bundle / "torch2ort.json").read_text())
    info = manifest.get("generation")
    if not isinstance(info, dict):
        raise UsageError(f"{bundle} is not a text-generation bundle (no 'generation' section)")
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    lengths, capped = prompt_lengths(opts.prompt_tokens, info.get("max_positions"), opts.new_tokens)
    prompts = seeded_prompts(lengths, int(config.get("vocab_size") or 256), info.get("eos_token_id") or [])
    threads = opts.threads or physical_cores()
    work.mkdir(parents=True, exist_ok=True)
    sides: dict[str, dict] = {OURS: {"measured": True, "note": f"the bundle's own loop (`Bundle.load(...)"
                                                              f".generator().stream_ids`), {variant}"},
                              BASELINE: {"measured": True, "note": "transformers `model.generate`, eager fp32, greedy, "
                                                                   "KV cache on"}}
    genai_dir = work / f"genai-{genai_precision(variant)}"
    if opts.genai_python is None:
        sides[GENAI] = {"measured": False, "note": "not measured: no interpreter with onnxruntime-genai was given. "
                                                   + GENAI_HOW}
    else:
        version = genai_version(opts.genai_python)
        log(f"onnxruntime-genai {version}: its model builder, {genai_precision(variant)}")
        why = build_genai(opts.genai_python, model_dir, genai_dir, genai_precision(variant), opts.timeout_s)
        note = (f"onnxruntime-genai {version} ({opts.genai_python}): its model builder on the same folder at "
                f"{genai_precision(variant)}, its generator, greedy")
        sides[GENAI] = {"measured": why is None, "note": note if why is None else f"not measured: {why}",
                        "version": version}
    base = {"bundle": str(bundle), "model_dir": str(model_dir), "genai_dir": str(genai_dir), "threads": threads,
            "prompts": prompts, "new_tokens": opts.new_tokens}
    jobs = [(s, opts.genai_python if s == GENAI else sys.executable) for s in sides if sides[s]["measured"]]
    runs: dict[str, list[dict]] = {s: [] for s, _ in jobs}
    before = noise_snapshot()
    for repeat in range(opts.repeats):
        for side, python in (jobs if repeat % 2 == 0 else list(reversed(jobs))):
            if not sides[side]["measured"]:
                continue
            log(f"{side}: prompts of {', '.join(prompts)} tokens, {opts.new_tokens} new each "
                f"(repeat {repeat + 1} of {opts.repeats})")
            try:
                runs[side].append(_spawn(python, base | {"side": side}, work, opts.timeout_s) | {"repeat": repeat})
            except UsageError as exc:
                if side == OURS:  # the bundle failing to generate is the run's failure; a peer's is its own
                    raise
                sides[side] |= {"measured": False, "note": f"not measured: {exc.one_line()}"}
                runs.pop(side, None)
    for side, rs in runs.items():
        sides[side] |= _medians(rs, list(prompts)) | {"runs": rs}
    for side in sides.values():  # every side has every key; a side not measured has no figures
        side.setdefault("ttft_ms", {})
        side.setdefault("decode_tok_s", {})
        side.setdefault("peak_rss_mb", None)
    if OURS in runs:
        sides[OURS]["note"] += ", torch imported in its process: " + ("yes" if sides[OURS]["torch_imported"] else "no")
    return {"bundle": str(bundle), "variant": variant, "threads": threads, "prompt_tokens": lengths,
            "requested_prompt_tokens": list(opts.prompt_tokens), "capped": capped, "new_tokens": opts.new_tokens,
            "repeats": opts.repeats, "kv_cache": kv_cache(info) | {"bytes_at_longest": kv_cache(info)["bytes_per_token"]
                                                                   * (max(lengths) + opts.new_tokens)},
            "sides": sides, "ratios": _ratios(runs, list(prompts)), "machine": machine_info(),
            "versions": versions(("onnxruntime", "torch", "transformers")), "noise": noise_between(before,
                                                                                                    noise_snapshot())}


def _medians(runs: list[dict], keys: list[str]) -> dict:
    decode = {k: [r["decode_tok_s"][k] for r in runs if r["decode_tok_s"].get(k)] for k in keys}
    return {"ttft_ms": {k: float(np.median([r["ttft_ms"][k] for r in runs])) for k in keys},
            "decode_tok_s": {k: float(np.median(v)) if v else None for k, v in decode.items()},
            "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in runs])),
            "torch_imported": any(r.get("torch_imported") for r in runs)}


def _ratios(runs: dict[str, list[dict]], keys: list[str]) -> dict[str, dict[str, dict]]:
    """``"ttft vs X"`` and ``"decode vs X"`` per prompt length: X's time over ours, per repeat pair (> 1: we are
    faster); decode compares milliseconds per token, its jitter the worst p90/p50 of the steps in a process."""
    out: dict[str, dict[str, dict]] = {}
    ours = sorted(runs.get(OURS, []), key=lambda r: r["repeat"])
    for peer in (BASELINE, GENAI):
        theirs = sorted(runs.get(peer, []), key=lambda r: r["repeat"])
        if not ours or len(theirs) != len(ours):
            continue
        ttft, decode = {}, {}
        for k in keys:
            ttft[k] = asdict(Ratio.of([r["ttft_ms"][k] for r in theirs], [r["ttft_ms"][k] for r in ours]))
            steps = [r["decode_step_ms"][k] for r in theirs + ours]
            if all(steps):
                worst = jitter([{"p50": float(np.percentile(s, 50)), "p90": float(np.percentile(s, 90))}
                                for s in steps])
                decode[k] = asdict(Ratio.of([float(np.mean(s)) for s in steps[:len(theirs)]],
                                            [float(np.mean(s)) for s in steps[len(theirs):]], worst))
        out[f"ttft vs {peer}"], out[f"decode vs {peer}"] = ttft, decode
    return out
