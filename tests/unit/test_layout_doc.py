"""The README's "Layout" and docs/ARCHITECTURE.md against the tree.

Goal: the layout a newcomer reads is the layout on disk. Method: the Layout block is a tree
by indentation (a name ending in `/` is a folder; names before the description, separated
by commas, are files in the folder above them); every name must exist, and every module and
subpackage of engine/ and server/ must be named. Every path ARCHITECTURE.md names in
backquotes must exist.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[2]
DESCRIPTION_COLUMN = 20  # an entry's names start left of this; continuation lines do not
NAME = r"[\w.-]+/?"
ENTRY = re.compile(rf"^(?P<indent> *)(?P<names>{NAME}(?:, {NAME})*)(?:  |$)")


def layout_block() -> str:
    text = (ROOT_DIR / "README.md").read_text()
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```\n", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no Layout section with a code block"
    return match.group(1)


def layout_paths(block: str) -> list[str]:
    """Every path the block names, relative to the repository root."""
    parents: list[tuple[int, str]] = []  # (indent, folder path), innermost last
    paths = []
    for line in block.splitlines():
        match = ENTRY.match(line)
        if match is None or len(match.group("indent")) >= DESCRIPTION_COLUMN:
            continue
        indent = len(match.group("indent"))
        while parents and parents[-1][0] >= indent:
            parents.pop()
        prefix = parents[-1][1] if parents else ""
        for name in match.group("names").split(", "):
            paths.append(prefix + name)
            if name.endswith("/"):
                parents.append((indent, prefix + name))
    return paths


def test_every_path_in_the_readme_layout_exists() -> None:
    missing = [path for path in layout_paths(layout_block()) if not (ROOT_DIR / path).exists()]
    assert missing == []


def test_the_readme_layout_names_every_module_and_subpackage() -> None:
    named = set(layout_paths(layout_block()))
    unnamed = []
    for package in ("engine", "server"):
        for path in sorted((ROOT_DIR / package).rglob("*.py")):
            relative = path.relative_to(ROOT_DIR).as_posix()
            if path.name == "__init__.py":
                relative = relative.removesuffix("__init__.py")
            if relative not in named:
                unnamed.append(relative)
    assert unnamed == []


def test_the_layout_reader_sees_nesting() -> None:
    block = "engine/   e\n  wal/    w\n    log.py  l\n  ops.py, errors.py\n        more text\n"
    assert layout_paths(block) == [
        "engine/",
        "engine/wal/",
        "engine/wal/log.py",
        "engine/ops.py",
        "engine/errors.py",
    ]


def test_every_path_in_the_architecture_doc_exists() -> None:
    text = (ROOT_DIR / "docs" / "ARCHITECTURE.md").read_text()
    cited = set(re.findall(r"`((?:engine|server|tests|tools|docs)/[\w/.]*)`", text))
    assert cited, "ARCHITECTURE.md names no file"
    missing = sorted(path for path in cited if not (ROOT_DIR / path).exists())
    assert missing == []


def test_pyproject_ships_every_package() -> None:
    """setuptools lists packages explicitly (keel_crashtest is mapped from tools/crashtest),
    so a new subpackage left out of pyproject.toml would be missing from the wheel."""
    pyproject = tomllib.loads((ROOT_DIR / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(path.parent.relative_to(ROOT_DIR).parts)
        for package in ("engine", "server")
        for path in (ROOT_DIR / package).rglob("__init__.py")
    }
    assert listed == on_disk | {"keel_crashtest"}
