"""Plots of a BenchReport: latency distributions per batch, and ORT speed-ups with their spread."""

from __future__ import annotations

from pathlib import Path

from torch2ort.errors import UsageError


def plot(report, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".svg", ".png"):
        raise UsageError(f"--plot {path}: use a .svg or .png file name")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'torch2ort[dev]' or pip install matplotlib") from None
    batches = [str(b) for b in report.options["batches"]]
    labels = sorted({r["label"] for r in report.runs if r.get("batches")})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    data, ticks, positions = [], [], []
    for i, b in enumerate(batches):
        for j, label in enumerate(labels):
            samples = [s for r in report.runs if r["label"] == label and b in r.get("batches", {})
                       for s in r["batches"][b]["samples_ms"]]
            if samples:
                data.append(samples)
                positions.append(i * (len(labels) + 1) + j)
                ticks.append(f"{label}\nbatch {b}")
    ax1.boxplot(data, positions=positions, showfliers=False)
    ax1.set_xticks(positions, ticks, fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("latency per call (ms, log)")
    ax1.set_title("Latency distributions (all repeats)")
    for k, (cand, per_batch) in enumerate(report.ratios.items()):
        xs = [int(b) for b in per_batch]
        med = [per_batch[b]["median"] for b in per_batch]
        lo = [per_batch[b]["median"] - per_batch[b]["min"] for b in per_batch]
        hi = [per_batch[b]["max"] - per_batch[b]["median"] for b in per_batch]
        ax2.errorbar([x * (1 + 0.03 * k) for x in xs], med, yerr=[lo, hi], marker="o", capsize=4, label=cand)
    ax2.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("speed-up vs torch (p50 ratio)")
    ax2.set_title("Speed-up, median and min–max over repeats")
    if report.ratios:
        ax2.legend(fontsize=8)
    fig.suptitle(f"{Path(report.onnx).name}: {report.options['threads']} threads, {report.machine['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
