"""Facts about this machine and its packages, read in one place: CPU, cores, CPU flags, versions.

Standard library only, so the torch-free runtime can use it as well as the benchmark and the report.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """x86 ``flags`` or Arm ``Features`` of the first CPU; empty when /proc/cpuinfo is unreadable."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def physical_cores() -> int:
    """Physical cores (hyper-threads share a core), else os.cpu_count()."""
    pairs = set()
    phys = core = None
    for line in _cpuinfo().splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if core is not None:
                pairs.add((phys, core))
            phys = core = None
    return len(pairs) if pairs else (os.cpu_count() or 1)


def machine_info() -> dict:
    return {"cpu": cpu_name(), "logical_cores": os.cpu_count(), "physical_cores": physical_cores(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def versions(packages: tuple[str, ...] = ("torch", "onnxruntime", "onnx", "numpy")) -> dict[str, str | None]:
    """Installed versions (None when absent), read from package metadata without importing anything."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def cpu_times() -> dict[str, int]:
    """Aggregate CPU jiffies from /proc/stat (user … steal); empty where unreadable."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return {}
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) for n, v in zip(names, first[1:])}


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def noise_between(before: dict, after: dict) -> dict:
    """What else the machine did during a measurement: load average at both ends, CPU steal share."""
    out = {"loadavg_before": before.get("loadavg"), "loadavg_after": after.get("loadavg"),
           "cores": os.cpu_count(), "steal_pct": None}
    b, a = before.get("cpu", {}), after.get("cpu", {})
    if b and a:
        total = sum(a.values()) - sum(b.values())
        out["steal_pct"] = round(100.0 * (a.get("steal", 0) - b.get("steal", 0)) / total, 2) if total > 0 else 0.0
    return out


def noise_snapshot() -> dict:
    return {"loadavg": load_average(), "cpu": cpu_times()}
