"""The larger built-in corpus (`--corpus builtin:docs`, data/docs_corpus.py), on a fake
site-packages: deterministic, with a manifest, cleaned like the default built-in corpus."""

from __future__ import annotations

import json

import pytest

from plmlab.data import docs_corpus
from plmlab.data.corpus import corpus_documents, read_corpus

PROSE = ("This function computes the running mean of a stream of numbers. It keeps a count and a total, "
         "and it never stores the values themselves. The result is exact for integers and close for floats.")


def _dist(site, name, version, files):
    """A distribution as pip installs it: the files, and a dist-info with METADATA and RECORD."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    record = [f"{rel},," for rel in files] + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    _dist(site, "Beta_Pkg", "2.0", {
        "beta_pkg/__init__.py": f'"""{PROSE}\n\n>>> mean([1, 2])\n1.5\n"""\n\ndef f():\n    """{PROSE}"""\n',
        "beta_pkg/tests/test_beta.py": f'"""{PROSE} TESTS ONLY."""\n',
        "beta_pkg/LICENSE.txt": f"{PROSE} LICENCE TEXT.",
    })
    _dist(site, "alpha", "1.0", {
        "alpha/README.rst": f"Alpha\n=====\n\n{PROSE}\n\n    code_sample(x=1)\n\n{PROSE}\n",
        "alpha/core.py": "x = 1\n",  # no docstring: no document
        "alpha/data.csv": f"{PROSE}",
    })
    _dist(site, "plmlab", "0.1", {"plmlab_fake/mod.py": f'"""{PROSE} OURSELVES."""\n'})
    return site


def test_build_is_deterministic_with_a_manifest(site):
    dists = docs_corpus.installed([str(site)])
    assert [d.metadata["Name"] for d in dists] == ["alpha", "Beta_Pkg"]  # sorted by normalised name, plmlab left out
    first, second = docs_corpus.build(dists), docs_corpus.build(docs_corpus.installed([str(site)]))
    assert first == second
    assert json.dumps(first) == json.dumps(second)
    manifest = first["manifest"]
    assert [(p["name"], p["version"], p["files"]) for p in manifest["packages"]] == [("alpha", "1.0", 1),
                                                                                     ("beta-pkg", "2.0", 1)]
    assert manifest["documents"] == 2 and manifest["chars"] == sum(p["chars"] for p in manifest["packages"])
    assert manifest["chars"] == sum(len(s) for doc in first["documents"] for s in doc)


def test_cleaning_keeps_prose_and_drops_code_tests_licences(site):
    text = " ".join(s for doc in docs_corpus.build(docs_corpus.installed([str(site)]))["documents"] for s in doc)
    assert "running mean" in text
    for dropped in (">>>", "1.5", "code_sample", "=====", "TESTS ONLY", "LICENCE TEXT", "OURSELVES"):
        assert dropped not in text


def test_caps_keep_whole_documents(site, monkeypatch):
    monkeypatch.setattr(docs_corpus, "MAX_CHARS", 10)  # the first document passes the cap: it stops there
    built = docs_corpus.build(docs_corpus.installed([str(site)]))
    assert built["manifest"]["documents"] == 1 and [p["name"] for p in built["manifest"]["packages"]] == ["alpha"]


def test_builtin_docs_by_name_is_cached_on_disk(site, tmp_path, monkeypatch):
    fake = docs_corpus.installed([str(site)])
    monkeypatch.setattr(docs_corpus, "installed", lambda paths=None: fake)
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path / "cache"))
    docs_corpus._cached.cache_clear()
    try:
        docs = corpus_documents("builtin:docs")
        assert read_corpus(["builtin:docs"]) == docs and len(docs) == 2
        cached = list((tmp_path / "cache").glob("docs-corpus-*.json"))
        assert len(cached) == 1
        assert docs_corpus.docs_manifest()["key"] in cached[0].name
        docs_corpus._cached.cache_clear()
        monkeypatch.setattr(docs_corpus, "build", lambda dists: pytest.fail("rebuilt despite the cache"))
        assert docs_corpus.docs_documents() == docs
        cached[0].write_text("[1, 2")  # damaged: rebuilt, with a warning
        docs_corpus._cached.cache_clear()
        monkeypatch.undo()
        monkeypatch.setattr(docs_corpus, "installed", lambda paths=None: fake)
        monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path / "cache"))
        assert docs_corpus.docs_documents() == docs
    finally:
        docs_corpus._cached.cache_clear()
