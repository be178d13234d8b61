"""lm-evaluation-harness adapter: any plmlab model directory as an lm-eval `LM`, registered
under the name "plmlab" when this module is imported (an optional extra: pip install plmlab[eval]).

    import lm_eval, plmlab.lmeval
    lm_eval.simple_evaluate(model="plmlab", model_args="pretrained=runs/gpt-mini", tasks=["hellaswag"])
    plmlab.lmeval.run_lm_eval("runs/gpt-mini", ["my_task"], include_path="tasks/")

lm-eval's whole contract is three methods (lm_eval/api/model.py): `loglikelihood`,
`loglikelihood_rolling`, `generate_until`. They run on plmlab's own scorers
(plmlab.evaluate.scoring: every family, including architectures transformers cannot load:
post-LN LLaMA, original GLM, ChatGLM-6B) and plmlab's generation, with lm-eval's tokenisation,
so a checkpoint that transformers can load gives the numbers of lm-eval's own `hf` backend.
"""

from __future__ import annotations

import json
import os

from .errors import PlmlabError
from .evaluate.result import EvalResult
from .evaluate.scoring import family, loglikelihood_tokens, loglikelihoods, prefix_id
from .nn.quantize import quantize as to_int8
from .pipelines import TextGeneration, load_model_and_tokenizer

try:
    import lm_eval
    import lm_eval.models  # noqa: F401  lm-eval's own backends first: it only loads them into an empty registry
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError:  # the optional extra is missing: run_lm_eval says so in one line
    lm_eval = None
    LM = object

    def register_model(*names):
        return lambda cls: cls

MISSING = "the lm-evaluation-harness is not installed: pip install 'plmlab[eval]' (or pip install 'lm-eval>=0.4')"


@register_model("plmlab")
class PlmlabLM(LM):
    """lm-eval's LM over a plmlab checkpoint (`pretrained`: a model or training run directory)
    or an already loaded `model` with its `tokenizer`."""

    def __init__(self, pretrained=None, model=None, tokenizer=None, batch_size=16, device="cpu",
                 max_gen_toks: int = 256, quantize: str | None = None, **_lm_eval_options) -> None:
        if lm_eval is None:
            raise PlmlabError(MISSING)
        super().__init__()
        if model is None:
            if pretrained is None:
                raise PlmlabError("the plmlab lm-eval model needs pretrained=DIR")
            model, tokenizer = load_model_and_tokenizer(pretrained, tokenizer, device)
        elif tokenizer is None:
            raise PlmlabError("a loaded model needs its tokenizer")
        self.model, self.tokenizer = to_int8(model, quantize).eval(), tokenizer
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16  # "auto": plmlab's default
        self.max_gen_toks = int(max_gen_toks)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return loglikelihoods(self.model, self.tokenizer, [tuple(r.args) for r in requests], self.batch_size)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The whole text's log-likelihood in disjoint windows of the model's length (lm-eval's
        HF rule: the first window starts from the prefix token, each later one keeps 1 token of context)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        if family(self.model) != "causal":
            raise PlmlabError(f"rolling log-likelihood needs a causal decoder; this is a {self.model.config.arch} "
                              "scored another way (choice tasks work for every family)")
        out = []
        for request in requests:
            (text,) = request.args
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                self.tokenizer.encode(text), prefix_id(self.tokenizer), self.model.config.max_positions, 1)]
            scores = loglikelihood_tokens(self.model, self.tokenizer, windows, self.batch_size)
            out.append(sum(ll for ll, _ in scores))
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, where the task asks) continuations cut at the task's `until` strings."""
        out: list[str] = [""] * len(requests)
        by_options: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            by_options.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        for key, idx in by_options.items():
            kwargs = json.loads(key)
            until = kwargs.get("until") or []
            stop = [until] if isinstance(until, str) else list(until)
            sample = bool(kwargs.get("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
            generator = TextGeneration(self.model, self.tokenizer, max_new_tokens=int(kwargs.get(
                "max_gen_toks", self.max_gen_toks)), do_sample=sample, stop=tuple(stop), truncate_left=True,
                temperature=float(kwargs["temperature"]) if sample else None, seed=0 if sample else None)
            for at in range(0, len(idx), self.batch_size):
                chunk = idx[at:at + self.batch_size]
                for i, result in zip(chunk, generator([requests[i].args[0] for i in chunk])):
                    out[i] = result["text"]
        return out


def run_lm_eval(model_dir, tasks, include_path=None, num_fewshot=None, limit=None, batch_size=16,
                include_defaults: bool = True, quantize: str | None = None) -> EvalResult:
    """Run lm-eval `tasks` (names, or a comma-separated string) on a plmlab model directory with
    lm_eval.simple_evaluate; metrics: {"results": {task: {metric: value}} as lm-eval reports them,
    "n_samples"}. `include_defaults=False` skips indexing lm-eval's own task library (seconds)
    when only tasks under `include_path` are wanted."""
    if lm_eval is None:
        raise PlmlabError(MISSING)
    from lm_eval.tasks import TaskManager

    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise PlmlabError("no lm-eval task named (give --lm-eval-tasks NAME[,NAME...])")
    if include_path is not None and not os.path.isdir(include_path):
        raise PlmlabError(f"--include-path {include_path} is not a directory")
    manager = TaskManager(include_path=str(include_path) if include_path is not None else None,
                          include_defaults=include_defaults)
    unknown = [n for n in names if not manager.match_tasks([n])]
    if unknown:
        raise PlmlabError(f"unknown lm-eval task(s) {', '.join(unknown)} (local tasks: --include-path DIR)")
    lm = PlmlabLM(pretrained=model_dir, batch_size=batch_size, quantize=quantize)
    out = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=num_fewshot, limit=limit,
                                  task_manager=manager, batch_size=batch_size)
    results = {task: {k: v for k, v in values.items() if k != "alias"} for task, values in out["results"].items()}
    return EvalResult("lm-eval", {"results": results, "n_samples": out.get("n-samples", {})}, [])
