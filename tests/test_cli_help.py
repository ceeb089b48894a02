from pathlib import Path

import click
import pytest

from digest.cli import COMMAND_MODULES, cli
from tests.conftest import run_cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        found.append((*prefix, name))
        if isinstance(cmd, click.Group):
            found += _commands(cmd, (*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_every_command_is_found_by_its_module_map() -> None:
    ctx = click.Context(cli)
    assert set(cli.list_commands(ctx)) == {"config", *COMMAND_MODULES}


def test_global_options_work_after_the_command_too(workdir: Path) -> None:
    (workdir / "x.toml").write_text("[feeds]\nper_host = 5\n")
    after = run_cli(["config", "--json", "--config", "x.toml", "--log-level", "debug"])
    assert after.exit_code == 0, after.output
    assert '"per_host": 5' in after.stdout
    assert (
        run_cli(["config", "--config=x.toml"]).stdout
        == run_cli(["--config", "x.toml", "config"]).stdout
    )
