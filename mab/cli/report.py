"""Turning plans and run reports into rich tables (formatting only, no I/O)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from mab.oci import short_digest
from mab.pipeline.results import JobStatus, RunReport, human_size
from mab.planning.plan import Plan

TABLE_ROWS = 100  # a bigger result is cut, with a note; --json always lists everything
# (rich takes ~1 ms a row: 300 rows were 0.5 s of a 2,000-target `mab plan`, issue 11)


def plan_table(plan: Plan, limit: int = TABLE_ROWS) -> Table:
    """Target x platform rows; past *limit* rows, the first targets and a closing row that
    says how many are left out (a 2,000-target table takes rich seconds to draw)."""
    table = Table(
        title=f"registry {plan.registry}"
        + (" (default)" if plan.registry_is_default else "")
        + f" - builder {plan.builder or '(current)'} - concurrency {plan.concurrency}",
        title_justify="left",
    )
    columns = ("target", "platform", "builder", "repository", "tags", "dockerfile", "stage")
    for column in (*columns, "gates"):
        table.add_column(column)
    base = plan.project_file.parent
    rows = 0
    for number, target in enumerate(plan.targets):
        if rows + len(target.platforms) > limit:
            left = len(plan.targets) - number
            table.add_row(f"... {left} more targets", "", "", "", "(mab plan --json lists all)")
            break
        rows += len(target.platforms)
        for i, platform in enumerate(target.platforms):
            first = i == 0
            table.add_row(
                target.name if first else "",
                str(platform),
                plan.route_for(platform).describe(),
                target.repository if first else "",
                ", ".join(target.tag_names) if first else "",
                target.source.describe(base) if first else "",
                (target.stage or "-") if first else "",
                (", ".join(target.gates.names) or "-") if first else "",
            )
    return table


def run_table(report: RunReport) -> Table:
    table = Table(title=f"mab {report.command}: {report.registry}", title_justify="left")
    for column in (
        "target",
        "platform",
        "status",
        "digest",
        "compressed",
        "layers",
        "cached",
        "duration",
    ):
        table.add_column(
            column,
            justify="right" if column in ("compressed", "layers", "cached", "duration") else "left",
        )
    for target in report.targets:
        for i, r in enumerate(target.platforms):
            style = "green" if r.status is JobStatus.BUILT else "red"
            table.add_row(
                target.name if i == 0 else "",
                str(r.platform),
                Text(str(r.status), style=style),
                short_digest(r.image_digest or r.pushed_digest),
                human_size(r.compressed_size),
                "-" if r.layers is None else str(r.layers),
                "-" if r.steps is None else f"{r.cached_steps}/{r.steps}",
                "-" if r.duration is None else f"{r.duration:.1f}s",
            )
    return table


def markdown_summary(report: RunReport) -> str:
    """A Markdown summary for CI step summaries ($GITHUB_STEP_SUMMARY)."""
    lines = [
        f"### mab {report.command}: {'ok' if report.ok else 'FAILED'}",
        "",
        "| target | status | tags | index digest | platforms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in report.targets:
        platforms = ", ".join(
            f"{p.platform} ({human_size(p.compressed_size)})" for p in t.platforms
        )
        tags = ", ".join(f"`{tag}`" for tag in t.tags) or "-"
        lines.append(
            f"| {t.name} | {t.status} | {tags} | `{short_digest(t.index_digest)}` | {platforms} |"
        )
    for t in report.targets:
        if t.error:
            lines.append(f"\n- **{t.name}**: {t.error}")
        for tag, why in t.held.items():
            lines.append(f"\n- {t.name}: `{tag}` not moved: {why}")
    return "\n".join(lines) + "\n"
