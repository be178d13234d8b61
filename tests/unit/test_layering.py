"""The package's layering (issue 22): imports run one way.

- Nothing inside plmlab imports the package façade (plmlab/__init__.py, the public API a user
  imports); internal code imports the module that defines what it needs, so the façade can
  re-export anything without an import cycle.
- The graph of module-level imports has no cycle, and its units (the top-level packages and
  modules) follow LAYERS, the order docs/layout.md writes out: a unit imports only units of a
  lower layer.
- A function-local import (one that would hide a cycle from the graph) is of an optional
  dependency, of something too slow to import at start-up (HEAVY), inside cli/ (the verbs load
  what they run only when run, so `plmlab --help` stays quick), or listed in ALLOWED /
  REWRITTEN, which may only shrink: an entry that no longer matches fails the test.

Everything is read from the source with `ast`, nothing is imported.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "plmlab"

# Lowest first. A unit may import units of lower layers only (not its neighbours in a layer).
# generation, pipelines and evaluate sit below train: the end of a run (train/finish.py,
# train/demo.py) samples, shows the demo and scores the built-in suite with them.
LAYERS = (
    ("errors", "registry"),
    ("config", "masks", "data", "plotting"),
    ("nn", "presets", "tokenizers"),
    ("families",),  # what a family's inputs and prompts look like: generation, scoring and SFT ask it
    ("models",),
    ("modeling",),
    ("hf", "objectives"),
    ("generation",),
    ("infill",),
    ("pipelines",),
    ("evaluate",),
    ("lmeval",),
    ("train",),
    ("finetune",),
    ("experiments", "serve"),
    ("cli",),
    ("plmlab", "__main__"),  # plmlab: the façade (plmlab/__init__.py), which nothing inside imports
)

# Packages of optional extras (pyproject's optional-dependencies), imported where they are used;
# a plmlab module that imports one at its top counts as optional too (serve/routes.py, lmeval.py).
OPTIONAL = ("lm_eval", "fastapi", "starlette", "uvicorn", "matplotlib", "torch.utils.tensorboard")
# Test oracles: never imported by the package, at the top or in a function.
NEVER = ("transformers", "peft")
# Slow to import and needed by few runs: imported where they are used (measured on the CPU
# build, torch 2.13), so that `import plmlab` and single-process runs never pay for them.
HEAVY = {
    "torch.distributed.fsdp": "~1.1 s to import; FSDP runs only",
    "torch.distributed.checkpoint.state_dict": "~0.15 s to import; FSDP saves and resumes only",
    "yaml": "~30 ms to import, a tenth of the CLI's own start-up; read only for a .yaml config file",
}
# "module:function -> imported module" entries that stay function-local, each with its reason.
ALLOWED = {
    # `import plmlab` loads the model core only (config, models, build_model): importing hf,
    # generation, tokenizers and pipelines at its top made it ~0.8 s slower (jinja2, tokenizers,
    # torch._decomp), so the façade's helpers import them when called.
    "plmlab:load_pretrained -> plmlab.hf": "start-up of import plmlab",
    "plmlab:save_pretrained -> plmlab.hf": "start-up of import plmlab",
    "plmlab:generate -> plmlab.generation": "start-up of import plmlab",
    "plmlab:load_tokenizer -> plmlab.tokenizers": "start-up of import plmlab",
    "plmlab:pipeline -> plmlab.pipelines": "start-up of import plmlab",
}
# Modules being rewritten (issue 22 builder/families): their local imports are theirs to remove.
# An entry whose module is gone, or has no function-local import left, must be deleted.
REWRITTEN = ()


# ------------------------------------------------------------------------------- reading the source
def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse(path: Path) -> ast.Module:
    return _parse(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _parse(text: str) -> ast.Module:  # by text: every check reads the same files
    return ast.parse(text)


def modules(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted(src.rglob("*.py"))}


def targets(node: ast.Import | ast.ImportFrom, module: str, path: Path, known) -> list[str]:
    """The modules an import statement loads: relative imports resolved, and `from pkg import
    name` meaning pkg.name where that is a module, else pkg."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


COMPOUND = (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.ClassDef, ast.ExceptHandler)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def top_level(body: list[ast.stmt]):
    """What runs when the module is imported: statements outside functions (class bodies, if /
    try / with blocks included), minus `if TYPE_CHECKING:` blocks."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        yield node
        if isinstance(node, ast.If) and _type_checking(node):
            yield from top_level(node.orelse)
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from top_level([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])


def local_imports(tree: ast.AST, scope: str = "", in_function: bool = False):
    """(function, import statement) for every import inside a function (methods and nested
    functions included; `scope` is the qualified name, e.g. "Class.method")."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{scope}.{node.name}" if scope else node.name
            yield from local_imports(node, inner, in_function or not isinstance(node, ast.ClassDef))
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and in_function:
            yield scope, node
        else:
            yield from local_imports(node, scope, in_function)


def _registry_targets(node: ast.AST, module: str, constants: dict) -> list[str]:
    """`import_present(__name__, NAMES)` (registry.py) imports module.name for each NAME: edges
    the graph must see, or a registry could hide a cycle."""
    if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "import_present" and len(node.args) == 2):
        return []
    package, names = node.args
    if isinstance(package, ast.JoinedStr):  # f"{__name__}.studies"
        package = "".join(module if isinstance(v, ast.FormattedValue) else v.value for v in package.values)
    elif getattr(package, "id", None) == "__name__":
        package = module
    else:
        return []
    return [f"{package}.{n.replace('-', '_')}" for n in constants.get(getattr(names, "id", None), ())]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the plmlab modules its import runs: its module-level imports, the registries it
    fills, and the packages those lie in (Python runs pkg/__init__.py first) unless the importer
    is inside that package already (its __init__ ran first). `from . import name` of a name that
    pkg/__init__.py defines is an edge to it, as a cycle through it is as real as any other."""
    known = modules(src)
    graph = {}
    for name, path in known.items():
        tree = parse(path)
        constants = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Tuple)
                     and all(isinstance(e, ast.Constant) for e in n.value.elts)}
        found = set()
        for node in top_level(tree.body):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(targets(node, name, path, known))
            if not isinstance(node, COMPOUND):  # a compound statement's body comes separately
                for call in ast.walk(node):
                    found.update(_registry_targets(call, name, constants))
        edges = {t for t in found if t in known}
        for target in found:  # the packages a target lies in, but not those the importer is in
            parts = target.split(".")
            edges.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts)))
                         if p in known and not name.startswith(p + ".") and name != p)
        graph[name] = edges - {name}
    return graph


# ------------------------------------------------------------------------------- the checks
def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle as [a, b, ..., a] (a imports b ... imports a), or [] when there is none."""
    state, stack = {}, []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    found = [f"{m}: its unit {unit(m)!r} is in no layer of LAYERS" for m in graph if unit(m) not in rank]
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            if unit(m) in rank and unit(d) in rank and unit(m) != unit(d) and rank[unit(d)] >= rank[unit(m)]:
                found.append(f"{m} imports {d}: {unit(m)} may import only layers below its own")
    return found


def _is_of(target: str, packages) -> bool:
    return any(target == p or target.startswith(p + ".") for p in packages)


def optional_modules(graph: dict[str, set[str]], src: Path = SRC) -> set[str]:
    """plmlab modules whose import needs an optional extra (directly or through another)."""
    known = modules(src)
    direct = {m for m, path in known.items()
              for node in top_level(parse(path).body)
              if isinstance(node, (ast.Import, ast.ImportFrom))
              and any(_is_of(t, OPTIONAL) for t in targets(node, m, path, known))}
    needs, grew = set(direct), True
    while grew:
        grew = bool(new := {m for m, deps in graph.items() if m not in needs and deps & needs})
        needs |= new
    return needs


def all_local_imports(src: Path = SRC) -> list[tuple[str, str, str, int]]:
    """(module, function, imported module, line) of every function-local import."""
    known = modules(src)
    return [(m, fn, t, node.lineno) for m, path in known.items()
            for fn, node in local_imports(parse(path))
            for t in dict.fromkeys(targets(node, m, path, known))]


def local_import_violations(src: Path = SRC, allowed=ALLOWED, rewritten=REWRITTEN) -> list[str]:
    optional = optional_modules(import_graph(src), src)
    found = []
    for m, fn, target, line in all_local_imports(src):
        if (_is_of(target, OPTIONAL + tuple(HEAVY)) or target in optional or m.startswith("plmlab.cli.")
                or m == "plmlab.cli" or f"{m}:{fn} -> {target}" in allowed or m in rewritten):
            continue
        found.append(f"{m}:{line} (in {fn}) imports {target}: import it at the top, or break the cycle that "
                     "stops you (move the shared piece to the lower module)")
    return found


def stale_allowances(src: Path = SRC) -> list[str]:
    present = {f"{m}:{fn} -> {t}" for m, fn, t, _ in all_local_imports(src)}
    holders = {m for m, *_ in all_local_imports(src)}
    return ([f"ALLOWED {e!r} no longer matches an import: delete it" for e in ALLOWED if e not in present]
            + [f"REWRITTEN {m!r} has no function-local import left: delete it" for m in REWRITTEN if m not in holders])


def facade_imports(src: Path = SRC) -> list[str]:
    known, found = modules(src), []
    for name, path in known.items():
        if path == src / "__init__.py":
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and "plmlab" in targets(node, name, path, known):
                what = ("from plmlab import " + ", ".join(a.name for a in node.names)
                        if isinstance(node, ast.ImportFrom) else "import plmlab")
                found.append(f"{path.relative_to(src.parent)}:{node.lineno} {what}")
    return found


def oracle_imports(src: Path = SRC) -> list[str]:
    known = modules(src)
    return [f"{m}:{node.lineno} imports {t}" for m, path in known.items()
            for node in ast.walk(parse(path))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for t in targets(node, m, path, known) if _is_of(t, NEVER)]


# ------------------------------------------------------------------------------- the package
def test_no_module_inside_the_package_imports_its_facade():
    assert facade_imports() == []


def test_the_module_import_graph_has_no_cycle():
    assert find_cycle(import_graph()) == []


def test_imports_run_down_the_layers():
    assert layer_violations(import_graph()) == []


def test_function_local_imports_are_optional_heavy_cli_or_listed():
    assert local_import_violations() == []


def test_every_allowance_still_matches_an_import():
    assert stale_allowances() == []


def test_the_test_oracles_are_never_imported():
    assert oracle_imports() == []


def test_docs_layout_writes_out_the_same_layers():
    """docs/layout.md's import order (top down, one layer a line) is LAYERS, so neither goes stale."""
    text = (SRC.parents[1] / "docs" / "layout.md").read_text(encoding="utf-8")
    block = text.split("Imports run one way.", 1)[1].split("```")[1].strip().splitlines()
    written = [tuple(name.strip().split(" ")[0].removesuffix("/").removesuffix(".py")
                     for name in re.sub(r"\(.*?\)", "", line).split(","))
               for line in reversed(block)]
    assert written == list(LAYERS)


def test_the_graph_sees_the_imports_that_matter():
    """Spot checks against the real tree, so the checks above cannot pass on an empty graph."""
    graph = import_graph()
    assert "plmlab.objectives.masking" in graph["plmlab.objectives.mlm"]
    assert "plmlab.objectives.tlm" in graph["plmlab.objectives"]  # a registry (import_present)
    assert "plmlab.experiments.studies.norms" in graph["plmlab.experiments.studies"]
    assert "plmlab.tokenizers" in graph["plmlab.serve.served"]  # the package of tokenizers.chat
    assert "plmlab.train" not in graph["plmlab.train.loop"]  # ... unless the importer is inside it
    assert "plmlab.objectives" in graph["plmlab.objectives.view"]  # from . import get_objective
    assert {"plmlab.serve.routes", "plmlab.lmeval"} <= optional_modules(graph)


# ------------------------------------------------------------------------------- planted faults
def _plant(root: Path, files: dict[str, str]) -> Path:
    src = root / "plmlab"
    for name, text in {"__init__.py": "", **files}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
        for parent in (src / name).parents:
            if parent != src and src in parent.parents and not (parent / "__init__.py").exists():
                (parent / "__init__.py").write_text("")
    return src


def test_the_check_sees_a_relative_facade_import(tmp_path):
    src = _plant(tmp_path, {"train/x.py": "def f():\n    from .. import generate\n",
                            "train/y.py": "from ..hf import load_pretrained\nfrom . import x\n", "hf/__init__.py": ""})
    assert facade_imports(src) == ["plmlab/train/x.py:2 from plmlab import generate"]


def test_a_planted_cycle_is_reported_as_its_modules(tmp_path):
    src = _plant(tmp_path, {
        "a.py": "from .b import thing\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import x\nfrom . import c\n",
        "c.py": "import plmlab.a\n",
        "d.py": "def f():\n    from . import a  # function-local: not an edge\n"})
    graph = import_graph(src)
    assert find_cycle(graph) == ["plmlab.a", "plmlab.b", "plmlab.c", "plmlab.a"]
    assert "plmlab.a" not in graph["plmlab.d"]
    (src / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import plmlab.a\n")
    assert find_cycle(import_graph(src)) == []


def test_a_registry_and_a_package_init_close_a_cycle(tmp_path):
    src = _plant(tmp_path, {
        "registry.py": "",
        "objectives/__init__.py": "from ..registry import import_present\nMODULES = ('mlm',)\n"
                                  "OBJECTIVES = import_present(__name__, MODULES)\n",
        "objectives/mlm.py": "from ..train.loop import Trainer\n",
        "train/__init__.py": "from .run import go\n",
        "train/run.py": "from ..objectives import OBJECTIVES\n",
        "train/loop.py": ""})
    cycle = find_cycle(import_graph(src))
    assert cycle == ["plmlab.objectives", "plmlab.objectives.mlm", "plmlab.train", "plmlab.train.run",
                     "plmlab.objectives"]
    # a submodule reaching back into its package's __init__ while that __init__ imports it
    src = _plant(tmp_path / "again", {
        "registry.py": "",
        "objectives/__init__.py": "from ..registry import import_present\nMODULES = ('tlm',)\n"
                                  "OBJECTIVES = import_present(__name__, MODULES)\n",
        "objectives/tlm.py": "from .view import objective_view\n",
        "objectives/view.py": "from . import OBJECTIVES\n"})
    assert find_cycle(import_graph(src)) == ["plmlab.objectives", "plmlab.objectives.tlm", "plmlab.objectives.view",
                                             "plmlab.objectives"]


def test_a_planted_upward_import_breaks_the_layers(tmp_path):
    src = _plant(tmp_path, {"nn/attention.py": "from ..train import loop\n", "train/loop.py": "",
                            "newpkg/x.py": ""})
    assert layer_violations(import_graph(src)) == [
        "plmlab.newpkg: its unit 'newpkg' is in no layer of LAYERS",
        "plmlab.newpkg.x: its unit 'newpkg' is in no layer of LAYERS",
        "plmlab.nn.attention imports plmlab.train: nn may import only layers below its own",
        "plmlab.nn.attention imports plmlab.train.loop: nn may import only layers below its own"]


def test_a_planted_local_import_is_reported_and_the_allowed_ones_are_not(tmp_path):
    src = _plant(tmp_path, {
        "train/x.py": "def f():\n    import json\n\n\nclass K:\n    def g(self):\n        from ..hf import io\n",
        "train/plots.py": "def draw():\n    import matplotlib\n    from torch.distributed.fsdp import fully_shard\n",
        "serve/routes.py": "import fastapi\n",
        "serve/app.py": "def create_app():\n    from .routes import register\n",
        "cli/pretrain.py": "def run(args):\n    from ..train import x\n",
        "hf/io.py": ""})
    found = local_import_violations(src, allowed={}, rewritten=())
    assert [f.split(": import it")[0] for f in found] == ["plmlab.train.x:2 (in f) imports json",
                                                          "plmlab.train.x:7 (in K.g) imports plmlab.hf.io"]
    assert local_import_violations(src, allowed={"plmlab.train.x:f -> json": ""}, rewritten=("plmlab.train.x",)) == []


def test_the_oracles_check_sees_a_local_transformers_import(tmp_path):
    src = _plant(tmp_path, {"hf/check.py": "def f():\n    from transformers import AutoModel\n"})
    assert oracle_imports(src) == ["plmlab.hf.check:2 imports transformers"]
