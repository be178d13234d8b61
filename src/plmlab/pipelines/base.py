"""The shape every pipeline shares: a model, its tokenizer and default options; called with one
text (one result) or a list of texts (a list of results); results are plain dicts and lists."""

from __future__ import annotations

from ..errors import PlmlabError


class Pipeline:
    """Subclasses set `task`, `defaults` (every option with its default) and implement
    `run(texts, **options) -> list[dict]`; `check(model)` refuses a model that cannot do the task."""

    task = ""
    defaults: dict = {}

    def __init__(self, model, tokenizer, **options) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.check(model)
        self.options = self._merge(self.defaults, options)

    def check(self, model) -> None:
        pass

    def _merge(self, base: dict, options: dict) -> dict:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise PlmlabError(f"unknown option(s) {', '.join(unknown)} for {self.task!r}; "
                              f"its options: {', '.join(self.defaults) or 'none'}")
        return {**base, **options}

    def __call__(self, inputs, **options):
        """One text (a str, or a dict where a task takes several fields) -> one result; a list of
        them -> a list of results. Options given here override the pipeline's."""
        opts = self._merge(self.options, options)
        if isinstance(inputs, (str, dict)):
            return self.run([inputs], **opts)[0]
        texts = list(inputs)
        if not texts:
            raise PlmlabError("no input text given")
        return self.run(texts, **opts)

    def run(self, texts: list[str], **options) -> list[dict]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, arch={self.model.config.arch!r})"
