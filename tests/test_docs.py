"""Every hook and every CLI command is documented, with its exact signature."""

import inspect
import re

from dse_core.cli import cli
from dse_core.host import hookspecs

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
    assert len(expected) == 10


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


def test_every_module_and_path_the_docs_name_exists():
    """A doc that names dse_core.x.y or dse_core/x/y.py (or a shipped plugin's file) names
    something that exists: the layout can move, the docs must follow."""
    import importlib.util
    import re

    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
            ROOT / "systolic_dse_plugins" / "rtl" / "README.md"]
    for doc in docs:
        text = doc.read_text()
        for path in re.findall(r"\b((?:dse_core|systolic_dse_plugins)/[\w/]+(?:\.\w+)+)", text):
            assert (ROOT / path).exists(), f"{doc.name}: {path}"
        for dotted in re.findall(r"\b(dse_core(?:\.[a-z_]+)+)", text):
            parts = dotted.split(".")
            # the longest importable prefix; the rest must be attributes of it
            for cut in range(len(parts), 0, -1):
                module = ".".join(parts[:cut])
                try:
                    if importlib.util.find_spec(module) is not None:
                        break
                except (ModuleNotFoundError, AttributeError):  # a parent is no package
                    continue
            obj = importlib.import_module(module)
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"{doc.name}: {dotted}"
                obj = getattr(obj, attr)
