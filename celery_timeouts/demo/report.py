"""What a demo run found, as a table for people and as JSON for programs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .scenario import (
    AUTOSCALE,
    AUTOSCALE_TASKS,
    ENABLED,
    HARD_LIMIT,
    MODES,
    RUN_FOR,
    SOFT_LIMIT,
    STOCK,
    TASKS,
    AutoscaleRun,
    DemoTask,
    Outcome,
    WorkerRun,
)

HEADINGS = {STOCK: "stock Celery", ENABLED: "with celery-timeouts"}


@dataclass
class DemoReport:
    broker: str  # "filesystem" or "redis"
    pools: list[str]  # as asked for, in that order
    missing: dict[str, str]  # pool -> "not installed: pip install ..."
    runs: list[WorkerRun]
    autoscale: list[AutoscaleRun]
    seconds: float
    interrupted: bool
    runs_by_pool: dict[tuple[str, str], WorkerRun] = field(init=False)

    def __post_init__(self) -> None:
        self.runs_by_pool = {(run.pool, run.mode): run for run in self.runs}

    def outcome(self, pool: str, mode: str, task_key: str) -> Outcome:
        """What became of one task; "not run" where the run was cut short."""
        run = self.runs_by_pool.get((pool, mode))
        if run is None or task_key not in run.outcomes:
            return Outcome("not run")
        return run.outcomes[task_key]

    @property
    def failed_to_start(self) -> list[str]:
        """The workers that never took a task, as "pool/mode"."""
        return [
            run.title
            for run in self.runs
            if any(got.outcome == "worker did not start" for got in run.outcomes.values())
        ]


def table(report: DemoReport) -> str:
    """Pool x task, stock next to celery-timeouts, then the notes and the autoscale line."""
    footnotes: list[str] = []
    lines = [
        f"celery-timeouts demo: real workers on the {report.broker} broker; every task sent "
        f"with soft_time_limit={SOFT_LIMIT:g}, time_limit={HARD_LIMIT:g}",
        "(the alarm task's soft limit is 2 s, so that its own 1 s alarm comes first)",
        *(
            f"({task.label}: one blocking call of {task.run_for:g} s"
            + (", on 127.0.0.1 to a server that accepts and never answers)"
               if task.reads_silent_server else ")")
            for task in TASKS
            if task.run_for != RUN_FOR
        ),
        *(
            f"({task.label}: a time.sleep loop that catches SoftTimeLimitExceeded and goes on, "
            "so only the hard limit can end it)"
            for task in TASKS
            if task.catches_soft
        ),
        "",
        *_grid(report, footnotes),
    ]
    notes = [f"[{number}] {note}" for number, note in enumerate(footnotes, 1)]
    if any(run.pool == "prefork" for run in report.runs):
        late = " (about 1 s late on the filesystem transport)"
        notes.append(
            "prefork: celery-timeouts leaves it alone, billiard enforces both limits"
            + (late if report.broker == "filesystem" else "")
        )
    if notes:
        lines += ["", *notes]
    if report.autoscale:
        lines += ["", autoscale_line(report)]
    ending = "interrupted" if report.interrupted else "done"
    return "\n".join([*lines, "", f"{ending} in {report.seconds:.1f} s"])


def _grid(report: DemoReport, footnotes: list[str]) -> list[str]:
    """The table's heading and rows, in columns; a missing pool gets one line of its own."""
    heading = ["pool", "task", HEADINGS[STOCK], HEADINGS[ENABLED]]
    rows = {
        pool: _rows(report, pool, footnotes)
        for pool in report.pools
        if pool not in report.missing
    }
    every_row = [heading, *(row for pool_rows in rows.values() for row in pool_rows)]
    widths = [max(len(row[column]) for row in every_row) for column in range(len(heading))]
    widths[0] = max(widths[0], *(len(pool) for pool in report.pools))

    def line(cells: list[str]) -> str:
        padded = (f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True))
        return "  ".join(padded).rstrip()

    lines = [line(heading), line(["-" * width for width in widths])]
    for pool in report.pools:
        if pool in report.missing:
            lines.append(f"{pool:<{widths[0]}}  {report.missing[pool]}")
        else:
            lines += [line(row) for row in rows[pool]]
    return lines


def _rows(report: DemoReport, pool: str, footnotes: list[str]) -> list[list[str]]:
    """One row per task, the pool named on the first; new footnotes go on `footnotes`."""
    rows = []
    for index, task in enumerate(TASKS):
        cells = [pool if index == 0 else "", task.label]
        for mode in MODES:
            got = report.outcome(pool, mode, task.key)
            marks = "".join(f" [{_number(footnotes, note)}]" for note in got.footnotes(task))
            cells.append(got.text(task) + marks)
        rows.append(cells)
    return rows


def _number(footnotes: list[str], note: str) -> int:
    """The footnote number of `note`, added to `footnotes` if new: a note shared is one."""
    if note not in footnotes:
        footnotes.append(note)
    return footnotes.index(note) + 1


def autoscale_line(report: DemoReport) -> str:
    """How ``-P threads --autoscale`` fared, stock and with celery-timeouts."""
    width = max(len(HEADINGS[run.mode]) for run in report.autoscale) + 1
    lines = [f"-P threads --autoscale={AUTOSCALE}, {AUTOSCALE_TASKS} tasks of 1 s at once:"]
    lines += [
        f"  {HEADINGS[run.mode] + ':':<{width}}  {run.summary()}" for run in report.autoscale
    ]
    return "\n".join(lines)


def _cell(got: Outcome, task: DemoTask) -> dict[str, Any]:
    """One outcome for JSON: its fields, the table's text and the footnotes' text."""
    return {**asdict(got), "text": got.text(task), "notes": got.footnotes(task)}


def as_json(report: DemoReport) -> dict[str, Any]:
    """Everything in the table, with each outcome's state, seconds, result and message."""
    pools: dict[str, Any] = {}
    for pool in report.pools:
        if pool in report.missing:
            pools[pool] = {"installed": False, "note": report.missing[pool]}
            continue
        tasks = {
            task.key: {
                "task": task.name,
                "label": task.label,
                "soft_time_limit": task.soft,
                "time_limit": task.hard,
                **{mode: _cell(report.outcome(pool, mode, task.key), task) for mode in MODES},
            }
            for task in TASKS
        }
        pools[pool] = {"installed": True, "tasks": tasks}
    return {
        "broker": report.broker,
        "modes": list(MODES),
        "pools": pools,
        "autoscale": {
            run.mode: {
                "pool": "threads",
                "autoscale": AUTOSCALE,
                "tasks": AUTOSCALE_TASKS,
                "served": run.served,
                "ready": run.ready,
                "died": run.died,
                "grow_error": run.grow_error,
                "summary": run.summary(),
            }
            for run in report.autoscale
        },
        "seconds": round(report.seconds, 2),
        "interrupted": report.interrupted,
        "workers": [
            {
                "name": worker.name,
                "pid": worker.pid,
                "returncode": worker.returncode,
                "killed": worker.killed,
            }
            for worker in [run.worker for run in report.runs]
            + [run.worker for run in report.autoscale]
        ],
    }
