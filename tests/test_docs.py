"""Every hook and every CLI command is documented, with its exact signature."""

import inspect
import re

from dse_core import hookspecs
from dse_core.cli import cli

from .conftest import ROOT


def hook_names():
    return [name for name, fn in vars(hookspecs).items()
            if name.startswith("dse_") and inspect.isfunction(fn)]


def test_every_hook_is_documented_with_its_exact_signature():
    text = (ROOT / "docs" / "plugins.md").read_text()
    documented = re.findall(r"^### (dse_\w+)\((.*)\)$", text, flags=re.MULTILINE)
    expected = [(name, ", ".join(inspect.signature(getattr(hookspecs, name)).parameters))
                for name in hook_names()]
    assert sorted(documented) == sorted(expected)
    assert len(expected) == 8


def test_every_cli_command_and_option_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text()
    for name, command in cli.commands.items():
        assert f"## dse {name}" in text, name
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert opt in text, f"dse {name} {opt}"


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)\)", readme):
        assert (ROOT / target).exists(), target
