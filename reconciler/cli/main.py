"""The ``reconciler`` entry point: a click group whose commands are imported lazily.

Start-up time matters (``reconciler --help`` should answer in well under 150 ms), so this
module imports only click; each command's module is imported when that command runs.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from reconciler import __version__

#: command name -> ("module:attribute", short help shown by --help without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("reconciler.cli.validate:validate", "Check the desired state for errors."),
    "cron": ("reconciler.cli.cron:cron", "Explain cron expressions and their fire times."),
    "plan": ("reconciler.cli.plan:plan", "Show what applying a revision would change."),
    "apply": ("reconciler.cli.plan:apply", "Apply a revision or a saved plan to the state."),
    "schedules": ("reconciler.cli.schedules:schedules", "List schedules, states and fire times."),
    "run": ("reconciler.cli.runs:run", "Run a job template now."),
    "runs": ("reconciler.cli.runs:runs", "Run history; runs show ID for one run."),
    "retry": ("reconciler.cli.runs:retry", "Run a finished run again, as a new run."),
    "logs": ("reconciler.cli.runs:logs", "The log of a run."),
    "drift": ("reconciler.cli.runs:drift", "Configuration drift per server and template."),
    "serve": ("reconciler.cli.serve:serve", "Run the daemon: watch, reconcile, fire, execute."),
    "status": ("reconciler.cli.daemon_cmds:status", "Applied revision, replicas and queue."),
    "slots": ("reconciler.cli.daemon_cmds:slots", "The slot ledger: every due slot's fate."),
    "cancel": ("reconciler.cli.daemon_cmds:cancel", "Cancel a queued or running run."),
    "api-key": ("reconciler.cli.api_keys:api_key", "Create, list and revoke API keys."),
    "simulate": ("reconciler.cli.simulate:simulate", "The ledger serve would write over a range."),
    "pause": ("reconciler.cli.writeback:pause", "Pause a schedule in Git (enabled: false)."),
    "resume": ("reconciler.cli.writeback:resume", "Resume a paused schedule in Git."),
    "assume-ownership": (
        "reconciler.cli.writeback:assume_ownership",
        "Make a user the owner of a schedule in Git.",
    ),
    "clone": ("reconciler.cli.writeback:clone", "Copy a schedule in Git under a new name."),
    "approvals": ("reconciler.cli.approvals:approvals", "The approval queue."),
    "approve": ("reconciler.cli.approvals:approve", "Approve a schedule's content as a user."),
    "deny": ("reconciler.cli.approvals:deny", "Deny a schedule's content as a user."),
    "dry-run": ("reconciler.cli.approvals:dry_run", "Simulate a schedule without approving it."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler")
def cli() -> None:
    """GitOps reconciler for scheduled infrastructure jobs.

    Reads job templates, schedules, targets, policy and channels from a Git repository,
    plans and applies them, fires every schedule on time and runs each job as an Ansible
    playbook.
    """


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; known errors print one line and exit 1, never a traceback."""
    from reconciler.errors import ReconcilerError  # light: no third-party imports

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = cli.main(args=args, prog_name="reconciler", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        _json_error(args, "usage-error" if isinstance(e, click.UsageError) else "error", e)
        e.show()
        # A usage error is an error (1): 2 means "there are changes" to plan
        # --detailed-exitcode, and a CI job must not read a typo as a pending change.
        sys.exit(1 if isinstance(e, click.UsageError) else e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except ReconcilerError as e:
        from reconciler.cli.common import printable  # the message may quote the repository

        _json_error(args, _code(e), e)
        click.echo(f"error: {printable(str(e))}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def _wants_json(args: list[str]) -> bool:
    for i, a in enumerate(args):
        if a == "--format=json" or (a == "--format" and args[i + 1 : i + 2] == ["json"]):
            return True
    return False


def _code(e: Exception) -> str:
    """``StateUnavailable`` -> ``state-unavailable``: the error's class as a stable code."""
    name = type(e).__name__
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def _json_error(args: list[str], code: str, e: Exception) -> None:
    """With ``--format json`` an error is also one JSON document on stdout, so a script that
    parses stdout gets ``{"error": {"code", "message"}}`` instead of nothing."""
    if not _wants_json(args):
        return
    import json

    message = e.format_message() if isinstance(e, click.ClickException) else str(e)
    click.echo(json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=True))
