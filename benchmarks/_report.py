"""Write one marked section of BENCHMARKS.md, leaving the others as they are."""

from __future__ import annotations

from pathlib import Path

HEADER = """# Benchmarks

Every figure here was measured by the script named in its section, on the machine described.
Re-run a script to refresh its section; the others are left as they are.
"""


def machine() -> str:
    from torch2ort._env import machine_info

    m = machine_info()
    return f"{m['cpu']}, {m['logical_cores']} logical / {m['physical_cores']} physical cores, {m['system']}"


def update_section(path: Path, key: str, title: str, body: str) -> None:
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{start}\n## {title}\n\nMachine: {machine()}.\n\n{body}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
