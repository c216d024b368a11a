"""One text-generation side in its own process: ``python -P generate_worker.py CONFIG.json RESULT.json``.

The sides: ``torch2ort`` (the packed bundle's own torch-free loop, ``Bundle.generator().stream_ids``),
``transformers`` (``model.generate``, eager fp32, greedy, cache on) and ``onnxruntime-genai`` (its generator
on the folder its model builder wrote). Each times, per prompt, every chosen token: the first interval is the
time to first token (prefill plus the first choice), the others the decode steps. Then the process's peak RSS.

Only the standard library is imported at the top, and nothing from torch2ort's package: onnxruntime-genai
pins its own onnxruntime, so that side runs under another interpreter (``--genai-python``) that has no
torch2ort installed, and reads this file by its path (``-P`` keeps this folder off ``sys.path``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

StepTimes = Callable[[list[int], int], list[float]]  # (prompt ids, new tokens) -> seconds per chosen token


def torch2ort_side(cfg: dict) -> StepTimes:
    """The bundle as shipped: ``Bundle.load`` (checksums, manifest) and its generator, greedy, EOS held back."""
    from torch2ort.runtime import Bundle

    gen = Bundle.load(cfg["bundle"], intra_op_num_threads=cfg["threads"]).generator()
    return ours_step_times(gen)


def ours_step_times(gen) -> StepTimes:
    """Step times of a runtime ``Generator`` (benchmarks/generate_peers.py drives bare graphs through this too)."""
    def step_times(ids: list[int], n: int) -> list[float]:
        stamps = [time.perf_counter()]
        for _ in gen.stream_ids([ids], n, min_new_tokens=n):
            stamps.append(time.perf_counter())
        return [b - a for a, b in zip(stamps, stamps[1:])]

    return step_times


def transformers_side(cfg: dict) -> StepTimes:
    """``model.generate`` in eager fp32, greedy, with its cache; a streamer stamps each chosen token."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(cfg["threads"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model_dir"], dtype=torch.float32).eval()

    class Clock:
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def put(self, value) -> None:
            self.stamps.append(time.perf_counter())

        def end(self) -> None:
            pass

    def step_times(ids: list[int], n: int) -> list[float]:
        clock = Clock()
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                           max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=clock)
        stamps = [start] + clock.stamps[1:]  # the first put() is the prompt itself
        return [b - a for a, b in zip(stamps, stamps[1:])]

    return step_times


def genai_side(cfg: dict) -> StepTimes:
    """onnxruntime-genai's generator on its builder's folder, greedy, its threads set in genai_config.json."""
    import onnxruntime_genai as og

    path = Path(cfg["genai_dir"])
    config = json.loads((path / "genai_config.json").read_text())
    config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = cfg["threads"]
    (path / "genai_config.json").write_text(json.dumps(config, indent=1))
    model = og.Model(str(path))

    def step_times(ids: list[int], n: int) -> list[float]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n, do_sample=False)
        gen = og.Generator(model, params)
        stamps = [time.perf_counter()]
        gen.append_tokens([ids])
        while not gen.is_done():
            gen.generate_next_token()
            gen.get_next_tokens()
            stamps.append(time.perf_counter())
        return [b - a for a, b in zip(stamps, stamps[1:])]

    return step_times


SIDES = {"torch2ort": torch2ort_side, "transformers": transformers_side, "onnxruntime-genai": genai_side}


def measure(step_times: StepTimes, prompts: dict[str, list[int]], new_tokens: int) -> dict:
    """TTFT and decode tokens/s per prompt (its key: the length), after a short warm-up generation on each: a
    prompt length's first prefill pays one-off costs (ONNX Runtime sizes its buffers for the new shape)."""
    for ids in prompts.values():
        step_times(ids, min(new_tokens, 4))
    out: dict = {"ttft_ms": {}, "decode_tok_s": {}, "decode_step_ms": {}}
    for key, ids in prompts.items():
        times = step_times(ids, new_tokens)
        if len(times) != new_tokens:  # every side must give exactly the tokens asked for, EOS held back
            raise RuntimeError(f"{len(times)} tokens came back, not {new_tokens}")
        out["ttft_ms"][key] = times[0] * 1000.0
        out["decode_step_ms"][key] = [t * 1000.0 for t in times[1:]]
        out["decode_tok_s"][key] = (len(times) - 1) / sum(times[1:]) if len(times) > 1 else None
    return out


def peak_rss_mb() -> float:
    """Peak RSS of this process's own address space.

    /proc's VmHWM starts afresh at exec; getrusage's ru_maxrss does not on Linux (it keeps the
    forked parent's peak), which would charge the parent's memory to the worker.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(cfg: dict) -> dict:
    step_times = SIDES[cfg["side"]](cfg)
    out = measure(step_times, cfg["prompts"], cfg["new_tokens"])
    return out | {"side": cfg["side"], "pid": os.getpid(), "peak_rss_mb": peak_rss_mb(),
                  "torch_imported": "torch" in sys.modules}


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    try:
        result = run(cfg)
    except Exception as exc:  # reported to the parent as data, which turns it into one line
        lines = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
