"""docs/architecture.md stays true: every path its file tree names exists, and
every module of the package (outside train/, which names itself as one entry)
is in the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "python" / "generals_rl"
INDENT = 2  # spaces per level of the tree
# Named as a whole: its modules change on their own branch.
WHOLE_DIRECTORIES = ("train",)


def tree_paths(text: str) -> list[str]:
    """The paths of the fenced block under the "## Files" heading: one name a
    line, indented by level, directories ending in "/", a description after."""
    section = text.split("\n## Files", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block, "no fenced tree under ## Files"
    paths, parents = [], []
    for line in block[1].splitlines():
        if not line.strip():
            continue
        depth, rest = divmod(len(line) - len(line.lstrip(" ")), INDENT)
        assert rest == 0, f"the tree's indentation is off: {line!r}"
        name = line.split()[0]
        del parents[depth:]
        assert len(parents) == depth, f"{name} is indented below no directory"
        paths.append("/".join([*parents, name.rstrip("/")]))
        if name.endswith("/"):
            parents.append(name.rstrip("/"))
    return paths


def test_every_path_in_the_tree_exists():
    paths = tree_paths(DOC.read_text())
    assert len(paths) > 50
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == []


def test_every_module_of_the_package_is_in_the_tree():
    named = set(tree_paths(DOC.read_text()))
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
        and "_proto" not in p.parts
        and p.relative_to(PACKAGE).parts[0] not in WHOLE_DIRECTORIES
    }
    assert sorted(modules - named) == []


def test_the_tree_reader_nests_by_indentation():
    text = "intro\n## Files\n\n```\na/\n  b/\n    c.py   one\n  d.py     two\ne.md\n```\n"
    assert tree_paths(text) == ["a", "a/b", "a/b/c.py", "a/d.py", "e.md"]
