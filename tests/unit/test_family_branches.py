"""Family knowledge stays in the model core and families/ (issue 22, DESIGN "Layout" rule 4): no
code elsewhere in src/plmlab branches on a family fact.

A family branch is a comparison (==, !=, in, not in; in an `if`, a `return`, anywhere) or a table
lookup (`TABLE[c.arch]`, `TABLE.get(c.position)`) that reads:

    .arch, .norm_placement                     compared with anything
    .position                                  compared with a string, a tuple / list / set of strings or
                                               an UPPER_CASE constant (so the data cursor's
                                               `state.position`, an integer, is not one)
    TWO_D_POSITIONS (under any import alias)    GLM's 2-D positions

The model core (config.py, modeling.py, nn/, models/, hf/, presets/) and families/ may branch; elsewhere code
asks `plmlab.families.family_of(config)` or declares what it needs with `families.fits.Fits`.
`ALLOWED` (file -> count) is empty and may only stay so: a hit anywhere fails. Run this file with `-s` to print the current hits.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "plmlab"
# modeling.py builds the skeleton that config.arch names (build_model, load): the model core's constructor
CORE = ("config.py", "modeling.py", "nn/", "models/", "hf/", "presets/", "families/")
ALWAYS = {"arch", "norm_placement"}  # attributes that are family facts wherever they are compared
TWO_D = "TWO_D_POSITIONS"

# Hits outside the core allowed (file -> count): none since issue 22. Route a new branch through
# families/ (a hook on family_of(config), or a Fits declaring what a model must be) instead.
ALLOWED: dict[str, int] = {}


def _constant_like(node: ast.AST, two_d: set[str]) -> bool:
    """A string, a collection of strings, or an UPPER_CASE name: what `.position` is compared with."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name in two_d or (name.isupper() and len(name) > 1)


def _is_fact(node: ast.AST, two_d: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in two_d
    return isinstance(node, ast.Attribute) and (node.attr in ALWAYS or node.attr == TWO_D)


def _compare_hits(node: ast.Compare, two_d: set[str]) -> bool:
    operands = [node.left, *node.comparators]
    if any(_is_fact(o, two_d) for o in operands):
        return True
    positions = [o for o in operands if isinstance(o, ast.Attribute) and o.attr == "position"]
    return any(_constant_like(o, two_d) for o in operands if o not in positions) and bool(positions)


def _keyed_by_fact(table: ast.AST, key: ast.AST) -> bool:
    """`TABLE[c.arch]`, `TABLE.get(c.position)`: `.position` only into an UPPER_CASE table (a cursor's
    `starts.get(self.position)` is no family lookup)."""
    if not isinstance(key, ast.Attribute):
        return False
    name = table.id if isinstance(table, ast.Name) else table.attr if isinstance(table, ast.Attribute) else ""
    return key.attr in ALWAYS or key.attr == "position" and name.isupper()


def branches_in(source: str) -> list[int]:
    """Line numbers of the family branches in one module's source (see the module docstring)."""
    tree = ast.parse(source)
    two_d = {TWO_D} | {a.asname for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                       for a in n.names if a.name == TWO_D and a.asname}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and _compare_hits(node, two_d):
            lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _keyed_by_fact(node.value, node.slice):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and _keyed_by_fact(node.func.value, node.args[0])):
            lines.append(node.lineno)
    return sorted(lines)


def family_branches(src: Path = SRC) -> dict[str, list[int]]:
    """{path relative to the package: [line, ...]} of every module outside the core with a hit."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel.startswith(CORE):
            continue
        lines = branches_in(path.read_text(encoding="utf-8"))
        if lines:
            found[rel] = lines
    return found


def test_no_new_family_branch_and_the_allowlist_is_current():
    found = {rel: len(lines) for rel, lines in family_branches().items()}
    for rel, lines in family_branches().items():
        print(f"{rel}: {len(lines)} at lines {', '.join(map(str, lines))}")
    grown = {rel: (n, ALLOWED.get(rel, 0)) for rel, n in found.items() if n > ALLOWED.get(rel, 0)}
    assert not grown, ("family branches outside the model core and families/ (found, allowed); ask "
                       f"plmlab.families.family_of(config) instead: {grown}")
    shrunk = {rel: (found.get(rel, 0), n) for rel, n in ALLOWED.items() if found.get(rel, 0) < n}
    assert not shrunk, f"fewer family branches than allowed (found, allowed): lower ALLOWED to match: {shrunk}"
    print(f"{sum(found.values())} family branches in {len(found)} files outside the core")


def test_the_checker_sees_planted_branches_and_skips_the_core(tmp_path):
    planted = ("from ..families.glm import TWO_D_POSITIONS as TWO\n"
               "def f(config, state, RUNNERS):\n"
               "    if config.arch == 'decoder':\n"                 # 3
               "        pass\n"
               "    two = config.position in TWO\n"                 # 5: under an alias
               "    x = 1 if cfg.position != 'rotary-2d' else 2\n"  # 6
               "    run = RUNNERS[config.arch]\n"                   # 7: a lookup is a branch too
               "    other = RUNNERS.get(config.position, None)\n"   # 8
               "    done = state.position == state.n\n"             # the data cursor: not a family fact
               "    size = starts.get(state.position)\n"          # nor a lookup by it
               "    return c.norm_placement in ('pre', 'post')\n")  # 11
    assert branches_in(planted) == [3, 5, 6, 7, 8, 11]
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "families").mkdir()
    (tmp_path / "nn").mkdir()
    (tmp_path / "pipelines" / "x.py").write_text(planted)
    (tmp_path / "families" / "glm.py").write_text(planted)
    (tmp_path / "nn" / "position.py").write_text(planted)
    (tmp_path / "config.py").write_text(planted)
    assert family_branches(tmp_path) == {"pipelines/x.py": [3, 5, 6, 7, 8, 11]}
