"""The ``dse`` command line (docs/cli.md). User errors print one line ``error: …`` and exit
with status 2; ``-v`` adds the traceback. Plugins can add subcommands through
``dse_register_commands``. The command modules import :mod:`dse_core.cli.group` only; this
module puts them together."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click

from dse_core.cli import compress, inspect, search, switching
from dse_core.cli.group import cli, state
from dse_core.errors import DseError, one_line

__all__ = ["cli", "main"]

for _module in (inspect, switching, compress, search):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``dse`` console script."""
    try:
        # Without standalone mode click returns ctx.exit()'s status instead of exiting.
        status = cli.main(args=list(argv) if argv is not None else None, prog_name="dse",
                          standalone_mode=False)
    except DseError as exc:
        if state["verbose"]:
            traceback.print_exc()
        click.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, as every user error (docs/cli.md)
        command = exc.ctx.command_path if exc.ctx is not None else "dse"
        message = " ".join(exc.format_message().split())
        click.echo(f"error: {message} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted (a search keeps its finished trials: run it again to "
                   "continue)", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
