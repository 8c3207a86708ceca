"""Live progress of a run, drawn with rich: one row per target x platform.

On a terminal it animates a table; in CI or a pipe it prints one plain line per event,
so logs stay readable and greppable. Build log lines are shown in full with --verbose.

On GitHub Actions and GitLab CI every target/platform's build log is kept and printed
when that build ends, folded in a log group of its own (``::group::`` / GitLab's
collapsed sections, as cibuildwheel does): platforms build in parallel, so their lines
would interleave otherwise.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mab.pipeline.results import JobStatus, PlatformResult, TargetResult
from mab.planning.plan import Job, Plan

_STYLE = {
    JobStatus.QUEUED: "dim",
    JobStatus.BUILDING: "yellow",
    JobStatus.BUILT: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "dim",
}


_GROUP_LINES = 5000  # the last lines of one build kept for its CI log group


class LogGroups:
    """Folded log sections in a CI system's log viewer."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @classmethod
    def for_environment(cls, environ: Mapping[str, str] = os.environ) -> LogGroups | None:
        if environ.get("GITHUB_ACTIONS") == "true":
            return cls("github")
        if environ.get("GITLAB_CI") == "true":
            return cls("gitlab")
        return None

    def wrap(self, key: str, title: str, lines: list[str]) -> str:
        if self.kind == "github":
            body = "".join(f"{line}\n" for line in lines)
            return f"::group::{title}\n{body}::endgroup::\n"
        name = re.sub(r"[^a-z0-9_.-]", "_", key.lower())
        stamp = int(time.time())
        body = "".join(f"{line}\n" for line in lines)
        return (
            f"\x1b[0Ksection_start:{stamp}:{name}[collapsed=true]\r\x1b[0K{title}\n{body}"
            f"\x1b[0Ksection_end:{int(time.time())}:{name}\r\x1b[0K\n"
        )


class _Row:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = JobStatus.QUEUED
        self.started: float | None = None
        self.ended: float | None = None
        self.last = ""
        self.log: deque[str] = deque(maxlen=_GROUP_LINES)


class ConsoleReporter:
    """Implements pipeline.Reporter on the shared console."""

    def __init__(
        self,
        console: Console,
        plan: Plan,
        *,
        live: bool,
        verbose: bool = False,
        groups: LogGroups | None = None,
    ) -> None:
        self._console = console
        self._rows = {job.key: _Row(job) for job in plan.jobs}
        self._lock = threading.Lock()
        self._verbose = verbose
        self._groups = groups
        self._live: Live | None = (
            Live(get_renderable=self._table, console=console, refresh_per_second=4, transient=True)
            if live
            else None
        )

    def __enter__(self) -> ConsoleReporter:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def _print(self, text: Text | str) -> None:
        if isinstance(text, str):
            text = Text(text)
        self._console.print(text)

    def notice(self, message: str) -> None:
        self._print(Text(message, style="cyan"))

    def warning(self, message: str) -> None:
        self._print(Text(f"warning: {message}", style="yellow"))

    def job_started(self, job: Job) -> None:
        with self._lock:
            row = self._rows[job.key]
            row.status = JobStatus.BUILDING
            row.started = time.monotonic()
        if self._live is None:
            self._print(f"[{job.key}] building")

    def job_log(self, job: Job, line: str) -> None:
        with self._lock:
            row = self._rows[job.key]
            row.last = line
            grouped = self._groups is not None and row.ended is None
            if grouped:
                row.log.append(line)
        # with log groups, a line after the build ended (the failing step's log) is shown
        if not grouped and (self._verbose or self._groups is not None):
            self._print(Text(f"[{job.key}] {line}", style="dim"))

    def job_finished(self, job: Job, result: PlatformResult) -> None:
        with self._lock:
            row = self._rows[job.key]
            row.status = result.status
            row.ended = time.monotonic()
        took = f"{result.duration:.1f}s" if result.duration is not None else ""
        if self._groups is not None:
            with self._lock:
                lines = list(row.log)
            title = f"[{job.key}] {result.status} in {took}: build log ({len(lines)} lines)"
            self._console.file.write(self._groups.wrap(job.key, title, lines))
            self._console.file.flush()
        if result.status is JobStatus.BUILT:
            self._print(Text(f"[{job.key}] built {result.pushed_digest} in {took}", style="green"))
        else:
            self._print(Text(f"[{job.key}] {result.status}: {result.error} ({took})", style="red"))

    def target_finished(self, result: TargetResult) -> None:
        if result.ok:
            refs = ", ".join(f":{t}" for t in result.tags)
            what = f"{result.repository} {refs}"
            self._print(Text(f"[{result.name}] {result.status}: {what}", style="bold green"))
            if result.error:
                self._print(Text(f"[{result.name}] {result.error}", style="yellow"))
        else:
            self._print(Text(f"[{result.name}] not published: {result.error}", style="bold red"))

    def _table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("target", "platform", "state", "time", "last output"):
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        now = time.monotonic()
        with self._lock:
            rows = list(self._rows.values())
        for row in rows:
            elapsed = ""
            if row.started is not None:
                elapsed = f"{(row.ended or now) - row.started:5.1f}s"
            table.add_row(
                row.job.target.name,
                str(row.job.platform),
                Text(str(row.status), style=_STYLE[row.status]),
                elapsed,
                Text(row.last[:200], style="dim"),
            )
        return table
