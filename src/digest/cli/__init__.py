"""The `digest` command line: parses arguments, calls services, turns DigestError into one line."""

from __future__ import annotations

import gc
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from digest import __version__
from digest.cli.context import App, pass_app
from digest.config import declared
from digest.configfile import as_toml, effective
from digest.errors import DigestError
from digest.startup import pause_collections, resume_collections

F = TypeVar("F", bound=Callable[..., Any])
# Each command family lives in its own module, imported when one of its commands runs (its
# decorators add the commands to `cli`): `digest poll` does not load the preview's web server
# or the OPML builder's discovery, a tenth of its start-up.
COMMAND_MODULES = {
    "poll": "feeds",
    "feeds": "feeds",
    "preview": "issue",
    "pick": "picks",
    "skip": "picks",
    "picks": "picks",
    "intro": "picks",
    "subscribers": "delivery",
    "send": "delivery",
    "serve": "delivery",
    "run": "daemon",
    "status": "daemon",
    "opml": "opml",
    "bounces": "bounces",
    "backup": "backups",
    "restore": "backups",
    "migrate": "backups",
    "prune": "backups",
}
# Commands that resume the collections paused during start-up themselves, once their code is
# loaded (see digest.startup): the poll, when its fetch code is (first request 80-150 ms
# sooner in a warm poll of 500 feeds). Every other command resumes them as it starts.
RESUME_THEMSELVES = frozenset({"poll"})


# Options of `digest` itself that may also come after the command: `digest run --log-level info`.
GLOBAL_OPTIONS = ("--config", "--log-level", "--log-format")


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the global options found after the command moved before it."""
    hoisted: list[str] = []
    rest: list[str] = []
    k = _command_start(args)
    while k < len(args):
        arg = args[k]
        if arg == "--":
            rest += args[k:]
            break
        is_global = arg.split("=", 1)[0] in GLOBAL_OPTIONS
        takes = 2 if is_global and "=" not in arg else 1
        (hoisted if is_global else rest).extend(args[k : k + takes])
        k += takes
    return args[: _command_start(args)] + hoisted + rest


def _command_start(args: list[str]) -> int:
    """Where the command's name is: after `digest`'s own options and their values."""
    k = 0
    while k < len(args) and args[k].startswith("-"):
        k += 2 if args[k] in GLOBAL_OPTIONS else 1
    return k


class DigestGroup(click.Group):
    """Translates DigestError (and bad input in general) into one line on stderr, exit 1;
    loads command modules on demand; takes the global options after the command too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(COMMAND_MODULES.values())):
            importlib.import_module(f"digest.cli.{module}")
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None:
            importlib.import_module(f"digest.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as e:
            raise click.ClickException(str(e)) from e
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="TOML config file (default: $DIGEST_CONFIG, else ./digest.toml if present).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="How much to log on stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format.",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, log_level: str, log_format: str) -> None:
    """digest: poll the blogs of an OPML file and mail a weekly reading issue.

    Settings come from a TOML file and DIGEST_<SECTION>_<KEY> environment variables;
    `digest config` shows them.
    """
    if ctx.invoked_subcommand not in RESUME_THEMSELVES:
        resume_collections()
    ctx.obj = App(config_file=config_file, log_level=log_level, log_format=log_format)
    ctx.call_on_close(ctx.obj.close)


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--keys", is_flag=True, help="List every setting with its env variable and help.")
@pass_app
def config_cmd(app: App, as_json: bool, keys: bool) -> None:
    """Print the effective settings as TOML (secrets masked), a file --config reads back.

    `digest config > digest.toml` starts a config file: unset settings, and secrets, are
    there commented out with their help.
    """
    if keys:
        for info in declared():
            click.echo(f"{info.dotted:28} {info.env:34} {info.doc}")
        return
    if as_json:
        click.echo(json.dumps(effective(app.settings), indent=2))
        return
    click.echo(as_toml(app.settings), nl=False)


def main() -> None:
    pause_collections()
    logging.captureWarnings(True)
    _name_the_main_module()
    try:
        cli(prog_name="digest")
    finally:
        # The interpreter's last collections walk every object the imports made: 55 ms of a
        # command's exit (SQLAlchemy, httpx and digest loaded; min of 15 runs each). Frozen
        # objects are not walked; files are flushed and atexit runs as before.
        gc.freeze()


def _name_the_main_module() -> None:
    """Give the `digest` console script's __main__ the spec of digest.__main__.

    Every new parser worker (a forkserver's child) re-runs the parent's main script as
    __mp_main__ unless __main__ names a module ending in ``.__main__``, which it skips: the
    console script would cost each worker the CLI's imports (25 ms a worker, measured; the
    forkserver's own preload of "__main__" never gets the script's path on Python 3.11).
    """
    import importlib.util

    main_module = sys.modules.get("__main__")
    if main_module is not None and getattr(main_module, "__spec__", None) is None:
        main_module.__spec__ = importlib.util.find_spec("digest.__main__")
