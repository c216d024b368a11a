"""One command from a PyTorch model to a verified, benchmarked, torch-free bundle plus a report.

Stages, in order: load, export, verify, optimize, verify-optimized, pack, check, bench, report. The bench
runs last so that it times the bundle as shipped (a decoder's generation loop is the bundle's own), and only a
bundle that passed its check.
A stage that fails stops the run with its exit code; the report is written anyway and says
where the run stopped and why. Every number in ``evidence.json`` was measured in this run.

Example::

    result = migrate(ModelRequest("hf:./all-MiniLM-L6-v2"), None, "out", MigrateOptions(optimize="auto"))
    result.exit_code, result.evidence.outcome.stopped_at
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch2ort import __version__
from torch2ort.errors import Torch2OrtError, describe
from torch2ort.evidence import Evidence, MachineInfo, Outcome, StageRecord, plain
from torch2ort.outdir import prepare_outdir
from torch2ort.pipeline.check_stage import Check
from torch2ort.pipeline.stages import Bench, Export, Load, Optimize, Pack, Stage, Verify, VerifyOptimized
from torch2ort.pipeline.state import MigrateOptions, MigrationState

EVIDENCE = "evidence.json"
REPORT_FILES = "report.md, report.html, evidence.json"

Progress = Callable[[str, str, dict], None]  # (event: start|done|failed|skipped|log, stage, info)


@dataclass
class MigrateResult:
    out: Path
    evidence: Evidence
    exit_code: int

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def migrate(request, spec, out: str | Path, opts: MigrateOptions | None = None,
            progress: Progress | None = None) -> MigrateResult:
    """Run every stage; never raises for a failing stage (see ``exit_code``), only for a bad OUTDIR."""
    from torch2ort._env import machine_info, versions

    opts = opts or MigrateOptions()
    out = prepare_outdir(Path(out), opts.force, EVIDENCE, "a torch2ort migrate output")
    progress = progress or (lambda *a: None)
    evidence = Evidence(torch2ort=__version__, command=opts.command, started=_now(),
                        machine=MachineInfo.from_dict(machine_info()), versions=versions(),
                        options=plain(asdict(opts)))
    state = MigrationState(request, spec, out, opts, evidence, log=lambda line: progress("log", "", {"line": line}))
    stages: list[Stage] = [Load(), Export(), Verify(), Optimize(), VerifyOptimized(), Pack(), Check(), Bench()]
    for stage in stages:
        record = run_stage(stage, state, progress)
        evidence.stages.append(record)
        if record.status == "failed":
            evidence.outcome = Outcome(passed=False, stopped_at=record.name, reason=record.error,
                                       exit_code=record.exit_code)
            break
    else:
        evidence.outcome = Outcome(passed=True, stopped_at=None, reason=None, exit_code=0)
    done = {s.name for s in evidence.stages}
    evidence.stages += [StageRecord(name=s.name, status="not run") for s in stages if s.name not in done]
    write_report(state, progress)
    return MigrateResult(out, evidence, evidence.outcome.exit_code)


def run_stage(stage: Stage, state: MigrationState, progress: Progress) -> StageRecord:
    """Run one stage and record how it went; a Torch2OrtError keeps its exit code, anything else is exit 4."""
    progress("start", stage.name, {})
    start = time.perf_counter()
    record = StageRecord(name=stage.name, status="ok")
    try:
        summary = stage.run(state)
        if summary is None:
            record.status = "skipped"
        record.summary = summary or stage.skipped
    except Torch2OrtError as exc:
        record.status, record.error, record.exit_code = "failed", exc.one_line(), exc.exit_code
    except Exception as exc:  # a bug: recorded like the rest, exit 4
        record.status, record.error, record.exit_code = "failed", f"internal error: {describe(exc)}", 4
    record.seconds = round(time.perf_counter() - start, 3)
    progress(record.status if record.status != "ok" else "done", stage.name, record.to_dict())
    return record


def write_report(state: MigrationState, progress: Progress) -> None:
    """evidence.json first (so it exists whatever happens), then report.md and report.html, then
    evidence.json again with the report stage's time. A crash while rendering is recorded as exit 4."""
    from torch2ort.report import write_reports

    ev = state.evidence
    start = time.perf_counter()
    ev.finished = _now()
    record = StageRecord(name="report", status="ok", summary=REPORT_FILES)
    ev.stages.append(record)
    path = state.out / EVIDENCE
    path.write_text(ev.to_json())
    try:
        write_reports(ev, state.out)
    except Exception as exc:  # a bug in rendering: the evidence is kept and says so
        record.status, record.error, record.exit_code = "failed", f"internal error: {describe(exc)}", 4
        if ev.outcome.passed:
            ev.outcome = Outcome(passed=False, stopped_at="report", reason=record.error, exit_code=4)
    record.seconds = round(time.perf_counter() - start, 3)
    path.write_text(ev.to_json())
    progress("done" if record.status == "ok" else "failed", "report", record.to_dict())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


__all__ = ["EVIDENCE", "MigrateOptions", "MigrateResult", "migrate", "prepare_outdir"]
