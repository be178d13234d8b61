"""Every command that the README and the pages of docs/ show runs from the checkout root after
the README's main path (issue 20): no run directory that nothing makes, no input file that is not
shipped, no output outside runs/ (which git ignores).

The commands are read from every ```bash block of README.md, examples/README.md and docs/*.md (not docs/experiments.md,
a generated page): continuation lines joined, `# comments` dropped (shlex), pipes and `&&` split.
Each `plmlab` command (also `python -m plmlab`, `torchrun ... -m plmlab`, and `make pretrain` as
the Makefile spells it) is parsed with plmlab's own argument parser, so a stale flag fails here
too, and then:

(a) every output (`--out`, `evaluate --plot`, `experiment report --index`) is under runs/; only the
    documented regeneration of the published studies may write docs/experiments and its page;
(b) every input file (`--train`, `--eval`, `--data`, `--corpus`, `--corpus-lang NAME=PATH`, `--pairs`,
    `--lexicon`, `--similar-words`, `--messages`, `--file`, `--include-path`, `--demos`,
    `--chat-template`, `--config`, `--tokenizer`, `--adapter`, a `--set KEY=FILE`, and any other
    argument naming a .jsonl / .csv / .txt / .json / .yaml file) exists in the checkout, or is
    under runs/ and made by some command's `--out` (a run directory or a file inside one, such as
    the eval_generate.jsonl that sft writes);
(c) every model (`--model`, `--teacher`, `--init-from`, `--compare`, a path `--student`, `plot`'s
    and `info`'s paths) under runs/ is made by some command's `--out`.

`test_the_checker_fails_on_each_broken_rule` feeds it a page that breaks each rule. The example
files that the docs added to examples/ are read with the readers their commands use.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from plmlab.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
SEPARATORS = {"|", "||", "&&", ";"}
FILE_SUFFIXES = (".jsonl", ".csv", ".txt", ".json", ".yaml", ".yml")

OUTPUTS = ("out", "index", "plot")  # argparse dests that name something a command writes
INPUTS = ("train", "eval", "data", "corpus", "pairs", "lexicon", "similar_words", "messages", "file",
          "include_path", "demos", "chat_template", "config", "tokenizer", "adapter")
MODELS = ("model", "teacher", "init_from", "compare", "dirs", "dir")
NOT_PATHS = ("builtin:docs",)  # named corpora
# The published studies' results and their page (docs/studies.md): the one documented write
# outside runs/, by `experiment run all --out docs/experiments` and `experiment report --index`.
PUBLISHED = {("experiment", "out"): {"docs/experiments"}, ("experiment", "index"): {"docs/experiments.md"}}


def pages() -> dict[str, str]:
    found = [ROOT / "README.md", ROOT / "examples" / "README.md"] + sorted(
        p for p in (ROOT / "docs").glob("*.md") if p.name != "experiments.md")
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in found}


def shell_commands(markdown: str) -> list[list[str]]:
    """The simple commands of every bash block, as shell words (pipes and && split, comments dropped)."""
    commands = []
    for block in BASH.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            current: list[str] = []
            for word in shlex.split(line, comments=True) + [";"]:
                if word in SEPARATORS:
                    if current:
                        commands.append(current)
                    current = []
                else:
                    current.append(word)
    return commands


def make_target(target: str) -> list[list[str]]:
    """The plmlab commands of a Makefile target's recipe (`$(PY) -m plmlab ...`)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"\n{target}:" in text, f"the Makefile has no target {target}"
    recipe = text.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [shlex.split(line.strip())[2:] for line in recipe if " -m plmlab " in line]


def plmlab_args(words: list[str]) -> list[list[str]]:
    """The plmlab argument lists a shell command runs ([] when it runs none)."""
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before the command
        words = words[1:]
    if words[:1] == ["make"]:
        return [args[1:] for target in words[1:] for args in make_target(target)]
    if words[:1] == ["plmlab"]:
        return [words[1:]]
    for i in range(1, len(words)):
        if words[i] == "plmlab" and words[i - 1] == "-m":
            return [words[i + 1:]]
    return []


def norm(path: str) -> str:
    return str(Path(path)).removeprefix("./")


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def values(value) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def shell_problems(page: str, words: list[str], root: Path) -> list[str]:
    """What a command other than plmlab's breaks: `cat` / `head` of a file that is not there, a
    script (`python bench/speedrun.py --out DIR`) that is not there or writes outside runs/."""
    shown, found = f"{page}: {shlex.join(words)}", []
    if words[0] in ("cat", "head", "tail"):
        found += [f"{shown}: no such file {w}" for w in words[1:]
                  if not w.startswith("-") and not w.isdigit() and not (root / w).exists()]
    if any(w.endswith(".py") for w in words):
        found += [f"{shown}: no such script {w}" for w in words if w.endswith(".py") and not (root / w).is_file()]
        found += [f"{shown}: output {norm(value)} is not under runs/"
                  for flag, value in zip(words, words[1:]) if flag == "--out" and not under(norm(value), "runs")]
    return found


def roles(ns: dict) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """([(dest, output)], inputs, models) of one parsed plmlab command (its argparse namespace)."""
    outputs = [(dest, norm(v)) for dest in OUTPUTS for v in values(ns.get(dest))]
    inputs = [v for dest in INPUTS for v in values(ns.get(dest))]
    inputs += [v.partition("=")[2] for v in values(ns.get("corpus_lang"))]  # NAME=PATH
    inputs += [v.partition("=")[2] for dest in ("set", "objective_set") for v in values(ns.get(dest))
               if v.partition("=")[2].endswith(FILE_SUFFIXES)]  # --set similar_words=FILE
    known = {*INPUTS, *OUTPUTS, *MODELS, "corpus_lang", "set", "objective_set", "verb", "text", "text_b", "prompt"}
    inputs += [v for dest, value in ns.items() if dest not in known for v in values(value)
               if v.endswith(FILE_SUFFIXES) and not re.search(r"\s", v)]  # a positional file
    models = [v for dest in MODELS for v in values(ns.get(dest))]
    models += [v for dest in ("student", "target") for v in values(ns.get(dest)) if "/" in v]  # not a preset
    return outputs, [norm(v) for v in inputs if v not in NOT_PATHS], [norm(v) for v in models]


def problems(docs: dict[str, str], root: Path = ROOT) -> list[str]:
    """Every broken rule of the commands in `docs` ({page name: markdown}), one line each."""
    parser = build_parser()
    found, parsed, produced = [], [], set()
    for page, text in docs.items():
        for words in shell_commands(text):
            commands = plmlab_args(words)
            found += [] if commands else shell_problems(page, words, root)
            for args in commands:
                shown = f"{page}: plmlab {shlex.join(args)}"
                produced |= {norm(value) for flag, value in zip(args, args[1:]) if flag == "--out"}
                try:
                    parsed.append((shown, vars(parser.parse_args(args))))
                except (Exception, SystemExit) as e:  # plmlab's UsageError (argparse's SystemExit)
                    found.append(f"{shown}: does not parse ({e})")

    def made(path: str) -> bool:  # a run directory some --out makes, or a file inside one
        return any(under(path, out) for out in produced)

    for shown, ns in parsed:
        outputs, inputs, models = roles(ns)
        found += [f"{shown}: output {value} is not under runs/" for dest, value in outputs
                  if not under(value, "runs") and value not in PUBLISHED.get((ns["verb"], dest), ())]
        for kind, paths in (("input", inputs), ("model", models)):
            for value in paths:
                if under(value, "runs") and not made(value):
                    found.append(f"{shown}: {kind} {value} is under runs/ but no command's --out makes it")
                elif not under(value, "runs") and not (root / value).exists():
                    found.append(f"{shown}: {kind} {value} does not exist in the checkout")
    return found


def test_every_documented_command_runs_after_the_main_path():
    found = problems(pages())
    assert not found, "\n".join(found)


def test_the_docs_show_commands_of_every_stage():
    """The parser above sees the pages' commands (a renamed fence or a moved page would make the
    first test pass on nothing)."""
    commands = [args for text in pages().values() for words in shell_commands(text) for args in plmlab_args(words)]
    verbs = {args[0] for args in commands if args}
    assert {"pretrain", "finetune", "sft", "dpo", "evaluate", "serve", "generate", "distill", "experiment"} <= verbs
    assert len(commands) > 80


BROKEN = """
```bash
plmlab pretrain --preset gpt-mini --out runs/gpt-mini           # makes runs/gpt-mini
plmlab sft --model runs/gpt-mini --out sft/                     # (a) an output outside runs/
plmlab evaluate --model runs/gpt-mini --task choice --data items.jsonl --out scores.jsonl   # (b) (a)
plmlab evaluate --model runs/gpt-mini --task generate --data runs/nowhere/eval_generate.jsonl   # (b) under runs/
plmlab generate --model runs/gpt "A list is"                    # (c) a run directory nothing makes
plmlab finetune --model runs/bert-mini --task classification \\
    --train examples/sentiment-train.csv --out runs/x --max-stepz 3   # a flag plmlab does not have
plmlab pretrain --preset xlm-tiny --corpus-lang en=missing-en.txt --out runs/xlm   # (b) NAME=PATH
plmlab objective mlm --text "x" --set similar_words=missing-vectors.txt   # (b) a file in --set
plmlab classify --model runs/gpt-mini --file runs/gpt-mini/texts.txt      # inside a made run: fine
plmlab plot runs/gpt-mini runs/gpt-wide --out compare.png       # (c) and (a)
plmlab experiment run norms --out docs/experiments              # allowed: the published results
plmlab experiment report docs/experiments --index docs/index.md # (a) another page than the published one
cat missing.jsonl                                               # no such file
PYTHONPATH=src python bench/speedrun.py --out bench/results/mine  # (a) for a script too
```
"""


def test_the_checker_fails_on_each_broken_rule():
    found = "\n".join(problems({"fake.md": BROKEN}))
    for expected in ("output sft is not under runs/",
                     "input items.jsonl does not exist",
                     "output scores.jsonl is not under runs/",
                     "input runs/nowhere/eval_generate.jsonl is under runs/ but no command's --out makes it",
                     "model runs/gpt is under runs/ but no command's --out makes it",
                     "--max-stepz 3: does not parse",
                     "input missing-en.txt does not exist",
                     "input missing-vectors.txt does not exist",
                     "model runs/gpt-wide is under runs/",
                     "output compare.png is not under runs/",
                     "output docs/index.md is not under runs/",
                     "no such file missing.jsonl",
                     "output bench/results/mine is not under runs/"):
        assert expected in found, f"{expected!r} not in:\n{found}"
    assert "runs/gpt-mini/texts.txt" not in found and "docs/experiments is not" not in found
    assert "model runs/gpt-mini is" not in found
    assert len(found.splitlines()) == 13, found


def test_make_pretrain_is_the_makefiles_plmlab_command():
    (args,) = plmlab_args(["make", "pretrain"])
    assert args[0] == "pretrain" and args[args.index("--out") + 1] == "runs/gpt-mini"
    assert plmlab_args(["torchrun", "--nproc_per_node", "8", "-m", "plmlab", "info", "gpt2"]) == [["info", "gpt2"]]
    assert plmlab_args(["PYTHONPATH=src", "python", "bench/speedrun.py"]) == []


def test_the_main_path_is_clean_by_itself():
    """The README alone (the main path and its serve block) needs nothing from docs/."""
    readme = {"README.md": pages()["README.md"]}
    assert not problems(readme), "\n".join(problems(readme))


# --- the example files the docs use (examples/), each read as its command reads it ---


def _choice(path):
    from plmlab.evaluate.choice_items import read_choice_items

    items = read_choice_items(path)
    assert all(len(item["choices"]) == 4 for item in items)
    return items


def _generate(path):
    from plmlab.evaluate.generate import read_generate_items

    return read_generate_items(path)


def _vectors(path):
    from plmlab.objectives.macbert import read_vectors

    words, unit = read_vectors(path)
    count, dim = map(int, Path(path).read_text(encoding="utf-8").splitlines()[0].split())
    assert unit.shape == (count, dim) and len(set(words)) == count
    return words


def _lexicon(path):
    from plmlab.data.chunker import Lexicon

    return Lexicon.read_lines(path)


def _tag_file(path):
    from plmlab.cli.args import read_text_file

    return read_text_file(path)


def _conversation(path):
    from plmlab.cli.objective import _read_conversation
    from plmlab.finetune.sft_data import conversation

    return conversation(_read_conversation(path), path)["messages"]


def _conversations(path):
    from plmlab.finetune.sft_data import read_conversations

    return read_conversations(path)


def _pairs(path):
    from plmlab.data.pairs import read_pairs

    pairs = read_pairs(path)
    assert {(p.src_lang, p.tgt_lang) for p in pairs} == {("en", "fr")}
    return pairs


def _mono(path):
    from plmlab.data.corpus import read_corpus_with_languages

    documents, languages = read_corpus_with_languages([path])
    assert set(languages) == {"en", "fr"}
    return documents


def _one_language(lang):
    def read(path):
        from plmlab.data.corpus import read_corpus_with_languages

        documents, languages = read_corpus_with_languages([f"lang:{lang}={path}"])
        assert set(languages) == {lang}
        return [sentence for document in documents for sentence in document]
    return read


def _lm_eval_task(path):
    import yaml

    task = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    data = ROOT / task["dataset_kwargs"]["data_files"]["test"]  # relative to the checkout root
    assert task["task"] == "plmlab_example_choice" and task["output_type"] == "multiple_choice"
    assert (task["doc_to_text"], task["doc_to_choice"], task["doc_to_target"]) == ("context", "choices", "label")
    return _choice(data)


EXAMPLE_FILES = {
    "choice.jsonl": _choice, "choice-demos.jsonl": _choice, "qa.jsonl": _generate,
    "vectors.txt": _vectors, "phrases.txt": _lexicon, "entities.txt": _lexicon, "sentences.txt": _tag_file,
    "conversation.json": _conversation, "chat-dev.jsonl": _conversations,
    "xlm-pairs.jsonl": _pairs, "xlm-mono.jsonl": _mono, "xlm-en.txt": _one_language("en"),
    "xlm-fr.txt": _one_language("fr"), "lm-eval/choice.yaml": _lm_eval_task,
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_FILES))
def test_each_example_file_reads_as_its_command_reads_it(name):
    path = EXAMPLES / name
    assert path.stat().st_size < 8_000  # a few KB: it ships in the repository
    assert len(EXAMPLE_FILES[name](str(path))) >= 5
    assert any(f"examples/{name}" in text for text in pages().values()), f"no page uses examples/{name}"


def test_a_malformed_example_fails_its_reader(tmp_path):
    from plmlab.errors import PlmlabError

    bad = tmp_path / "choice.jsonl"
    bad.write_text(json.dumps({"context": "x", "choices": ["a", "b"], "label": 2}) + "\n")
    with pytest.raises(PlmlabError, match="out of range"):
        EXAMPLE_FILES["choice.jsonl"](str(bad))
    bad = tmp_path / "vectors.txt"
    bad.write_text("2 3\nlist 0.1 0.2 0.3\ntuple 0.1 0.2\n")
    with pytest.raises(PlmlabError, match="expected 3"):
        EXAMPLE_FILES["vectors.txt"](str(bad))
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"src": "The cat.", "tgt": "Le chat.", "src_lang": "en"}) + "\n")
    with pytest.raises(PlmlabError, match="tgt_lang"):
        EXAMPLE_FILES["xlm-pairs.jsonl"](str(bad))


def test_the_lm_eval_task_loads_from_the_checkout(monkeypatch):
    """lm-eval finds the example task in examples/lm-eval/ (its own task library not indexed)."""
    tasks = pytest.importorskip("lm_eval.tasks", reason="lm-eval is an optional extra (plmlab[eval])")
    manager = tasks.TaskManager(include_path=str(EXAMPLES / "lm-eval"), include_defaults=False)
    assert "plmlab_example_choice" in manager.all_tasks
