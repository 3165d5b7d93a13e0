"""What every `lmforge` command module shares: the consoles and the user-error boundary."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from lmforge.errors import LmforgeError

console = Console()
err_console = Console(stderr=True)
state = {"debug": False}


RESUME = "run `lmforge run` again to resume"


@contextmanager
def errors(interrupted: str = "") -> Iterator[None]:
    """User errors: one line, no traceback, exit 1. Anything else: internal error + traceback.
    Ctrl-C: exit 130 with `interrupted` said after it (what the command left, what to do)."""
    try:
        yield
    except LmforgeError as exc:
        if state["debug"]:
            sys.stderr.write(traceback.format_exc())
        err_console.print(Text.assemble((f"{exc.headline}: ", "bold red"), str(exc)), soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]" + (f": {interrupted}" if interrupted else ""))
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        sys.stderr.write(traceback.format_exc())
        err_console.print(
            Text.assemble(("internal error: ", "bold red"), f"{type(exc).__name__}: {exc}"), soft_wrap=True
        )
        raise typer.Exit(2) from None
