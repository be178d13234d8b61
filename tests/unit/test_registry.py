"""A registry imports every module it lists: a missing or broken one fails loudly, never skips."""

import sys

import pytest

from plmlab.registry import import_present


def test_listed_modules_are_imported_in_order():
    modules = import_present("plmlab.presets", ("gpt", "t5"))
    assert [m.__name__ for m in modules] == ["plmlab.presets.gpt", "plmlab.presets.t5"]


def test_a_listed_module_that_does_not_exist_fails():
    with pytest.raises(ModuleNotFoundError, match="plmlab.presets.gpt5"):
        import_present("plmlab.presets", ("gpt", "gpt5"))


def test_a_listed_module_that_fails_to_import_fails(tmp_path, monkeypatch):
    pkg = tmp_path / "fakereg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("import plmlab.no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fakereg", raising=False)
    with pytest.raises(ModuleNotFoundError, match="plmlab.no_such_module"):
        import_present("fakereg", ("broken",))
