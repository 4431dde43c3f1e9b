"""The rooms and one-way layers of docs/architecture.md, checked against the code's actual imports.

Every `import` of the package (module level or inside a function) is read with `ast`, so the
page and the code cannot drift: a new room must get a row in the rooms table, a new import
between rooms must be listed in its row's "knows about" column, and the arrows line must
order the rooms so that no import points up (or sideways, between rooms of one level).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "lightning_asym"
DOC = ROOT / "docs" / "architecture.md"


def _room(module: str) -> str | None:
    """`lightning_asym.envs.retail.env` -> `envs`; None outside the package or for the package root."""
    parts = module.split(".")
    if parts[0] != "lightning_asym" or len(parts) < 2:
        return None
    return parts[1]


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def code_imports() -> dict[str, dict[str, list[str]]]:
    """room -> imported room -> the `file:line`s of those imports (imports inside a room excluded)."""
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        src = _room(module)
        if src is None:
            continue  # the package root only re-exports lazily
        out.setdefault(src, {})
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # `from lightning_asym import rl` imports the room `rl`
                targets = [f"{base}.{a.name}" for a in node.names] if base == "lightning_asym" else [base]
            else:
                continue
            for target in targets:
                dst = _room(target)
                if dst is not None and dst != src:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    out[src].setdefault(dst, []).append(where)
    return out


def _names(cell: str) -> list[str]:
    """Room names in a table cell: `types.py` -> types, `envs/` -> envs."""
    return [re.sub(r"(\.py|/)$", "", n) for n in re.findall(r"`([a-z_]+(?:\.py|/)?)`", cell)]


def doc_table() -> dict[str, set[str]]:
    """room -> the rooms its row in the table says it knows about."""
    text = DOC.read_text()
    section = text.split("## Rooms", 1)[1].split("\n\n", 2)[1]
    rows = [r for r in section.splitlines() if r.startswith("| `")]
    assert rows, f"{DOC}: no rooms table under '## Rooms'"
    order: list[list[str]] = []
    knows: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        rooms, last = _names(cells[0]), cells[-1]
        every = [r for group in order for r in group]
        if last.startswith("everything above"):
            allowed = set(every) | set(_names(last))
        elif last.startswith("everything"):
            allowed = {"*"}
        else:
            allowed = set(_names(last))
        order.append(rooms)
        for r in rooms:
            knows[r] = allowed
    return knows


def doc_levels() -> list[list[str]]:
    """The arrows line, lowest level first: "Arrows point one way: `a` ← `b`/`c` ← ..."."""
    text = " ".join(DOC.read_text().split("Arrows point one way:", 1)[1].split(".", 1)[0].split())
    return [_names(level) for level in text.split("←")]


IMPORTS = code_imports()


def test_every_room_has_a_row():
    # (a row may name a room not built yet: the page also holds the design's intended names)
    missing = sorted(set(IMPORTS) - set(doc_table()))
    assert not missing, (
        f"rooms {missing} of lightning_asym/ have no row in the rooms table of {DOC}: add one (what it "
        "holds, the rooms it imports) and place the room in the arrows line below the table"
    )


@pytest.mark.parametrize("room", sorted(IMPORTS))
def test_imports_are_listed_in_the_rooms_table(room):
    allowed = doc_table().get(room)
    if allowed is None or "*" in allowed:
        return  # a room without a row fails test_every_room_has_a_row
    extra = {dst: where for dst, where in IMPORTS[room].items() if dst not in allowed}
    assert not extra, (
        f"{room} imports {sorted(extra)} ({extra}) but its row in {DOC} knows only {sorted(allowed)}: "
        "remove the import or, if the arrow is meant, update the table and the arrows line"
    )


def test_arrows_point_one_way():
    levels = doc_levels()
    level = {room: i for i, rooms in enumerate(levels) for room in rooms}
    assert set(IMPORTS) <= set(level), (
        f"rooms missing from the arrows line of {DOC}: {set(IMPORTS) - set(level)}"
    )
    wrong = [
        f"{src} -> {dst} ({where[0]})"
        for src, targets in IMPORTS.items()
        for dst, where in targets.items()
        if level[dst] >= level[src]
    ]
    assert not wrong, f"imports that point up or sideways against the arrows line of {DOC}: {wrong}"


def test_the_checker_sees_known_imports():
    # guards the parser itself: these imports exist and must be found
    assert "backends" in IMPORTS["envs"] and "envs" in IMPORTS["review"] and "rl" in IMPORTS["actor"]
    assert "envs" not in IMPORTS["backends"]
