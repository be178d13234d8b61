"""Knowledge distillation (DistilBERT, Sanh et al. 2019) as a task of the one Trainer.

    plmlab distill --teacher DIR [--student half|PRESET|DIR] --out OUT [--corpus PATH ...]

    teacher dir + its tokenizer -> the corpus (built-in by default) as token shards -> the
      teacher's own objective (MLM, objectives/mlm.py, for an encoder; CLM for a decoder) ->
      student: `half` (the default: the teacher's config with half its layers, DistilBERT's recipe
      of the same width and one layer out of two) or a preset, initialised from every other
      teacher layer; or a checkpoint directory
      -> DistillTask (the frozen teacher runs under no_grad beside the student) -> Trainer.fit
      -> OUT/final (the student, Hugging Face layout, with the teacher's tokenizer)

The triple loss (section 3; transformers' examples/research_projects/distillation/distiller.py):

    L = alpha_ce  * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))   soft targets, mean per token
      + alpha_lm  * CE(z_s, labels)                                  the student's own MLM / CLM
      + alpha_cos * mean(1 - cos(h_s, h_t))                          last hidden states

The soft targets are compared where the MLM has a label (every real token for a causal
decoder), the hidden states at every real (attention-masked-in) token; T^2 keeps the soft
term's gradients on the scale of the hard one's as T grows (Hinton et al. 2015, section 2).
The run directory is fine-tuning's (a lock, --overwrite / --resume, crash-safe checkpoints;
finetune/run.py); options live in FinetuneOptions (``task="distill"``, ``model`` is the
teacher, ``max_length`` is ``--seq-len``, the distillation's own in ``extra``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ..data import build_token_data, builtin_documents, corpus_fingerprint, read_corpus
from ..errors import PlmlabError
from ..families import family_of
from ..hf import load_pretrained
from ..masks import IGNORE_INDEX
from ..modeling import build_model
from ..families.fits import Fits
from ..pipelines import load_model_and_tokenizer
from ..presets import PRESETS, get_preset
from ..train.objective_setup import build_objective
from ..train.parallel import Dist
from ..train.precision import Precision
from ..train.setup import choose_device
from ..train.task import Batch, Loss, Mean, PretrainTask
from . import run
from .options import FinetuneOptions
from .tasks import steps_per_epoch

BUILTIN = "builtin"  # the built-in corpus
HALF = "half"  # --student default: the teacher's shape with half its layers
# transformers' distillation README trains DistilBERT with T=2, alpha_ce 5, alpha_mlm 2, alpha_cos 1
DEFAULTS = dict(temperature=2.0, alpha_ce=5.0, alpha_lm=2.0, alpha_cos=None, init="teacher", corpus=[],
                eval_batches=4)
# The run's defaults where they differ from fine-tuning's (transformers' distillation train.py:
# lr 5e-4, warmup 5 %, no weight decay); `plmlab distill`'s flags use them too
RUN_DEFAULTS = dict(lr=5e-4, warmup=0.05, weight_decay=0.0)
# The teachers distillation takes, by the objective its student learns beside the teacher's
# distribution: BERT-like encoders with their MLM head (DistilBERT), decoders with an LM head
# (1-D positions: a 2-D GLM answers as a blank, which this loss does not lay out)
TEACHERS = {"mlm": Fits(arch="encoder", head="mlm"), "clm": Fits(arch="decoder", head="lm")}


# ---------------------------------------------------------------------------- the options
def distill_options(teacher: str, student: str = HALF, out: str | None = None, corpus: list[str] | None = None,
                    seq_len: int | None = None, **fields) -> FinetuneOptions:
    """FinetuneOptions of a distillation run (the Python API of `plmlab distill`); the
    distillation's own options (DEFAULTS' keys) go to `extra`. `student`: "half" (the teacher's
    shape with half its layers), a preset or a checkpoint directory."""
    if out is None:
        raise PlmlabError("distill_options needs out= (the run directory)")
    extra = {k: fields.pop(k, v) for k, v in DEFAULTS.items()}
    extra.update(student=student, corpus=list(corpus or []))
    for name, value in RUN_DEFAULTS.items():
        fields.setdefault(name, value)
    if fields.get("max_steps") is None:
        fields.setdefault("epochs", 1)  # one pass over the corpus (FinetuneOptions refuses both)
    if extra["init"] not in ("teacher", "random"):
        raise PlmlabError(f"--init must be teacher or random, not {extra['init']!r}")
    cos = 1.0 if extra["alpha_cos"] is None else extra["alpha_cos"]  # None: on where the widths agree
    DistillWeights(extra["temperature"], extra["alpha_ce"], extra["alpha_lm"], cos)  # its one-line refusals, up front
    return FinetuneOptions(model=teacher, task="distill", train=",".join(corpus or []) or BUILTIN, out=out,
                           max_length=seq_len, extra=extra, **fields)


# ---------------------------------------------------------------------------- the loss
@dataclass(frozen=True)
class DistillWeights:
    temperature: float = 2.0
    alpha_ce: float = 5.0  # soft targets
    alpha_lm: float = 2.0  # the student's MLM / CLM loss
    alpha_cos: float = 1.0  # cosine between last hidden states

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise PlmlabError(f"--temperature must be a positive number, got {self.temperature!r}")
        alphas = {"ce": self.alpha_ce, "mlm": self.alpha_lm, "cos": self.alpha_cos}
        for name, value in alphas.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise PlmlabError(f"--alpha-{name} must be a finite number >= 0, got {value!r}")
        if not any(alphas.values()):
            raise PlmlabError("every loss weight is 0 (--alpha-ce, --alpha-mlm, --alpha-cos): nothing to train")


def distill_loss(student, teacher, labels: torch.Tensor, attention_mask: torch.Tensor | None, w: DistillWeights,
                 masked_lm: bool) -> dict[str, torch.Tensor]:
    """{"loss": the weighted sum, "soft_ce", "lm", "cos": its terms} from the two models' outputs
    (`.logits` (B, T, V), `.last_hidden_state` (B, T, d); the student's `.loss`, its own LM loss)."""
    real = torch.ones_like(labels, dtype=torch.bool) if attention_mask is None else attention_mask.bool()  # (B, T)
    soft_at = labels != IGNORE_INDEX if masked_lm else real  # (B, T)
    s = student.logits[soft_at].float() / w.temperature  # (N, V)
    t = teacher.logits[soft_at].float() / w.temperature  # (N, V)
    soft_ce = F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="sum") / max(1, s.shape[0])
    soft_ce = soft_ce * w.temperature ** 2
    zero = soft_ce * 0.0
    cos = zero
    if w.alpha_cos:
        hs, ht = student.last_hidden_state[real].float(), teacher.last_hidden_state[real].float()  # (M, d)
        cos = F.cosine_embedding_loss(hs, ht, hs.new_ones(hs.shape[0]))  # mean of 1 - cos
    lm = student.loss.float() if student.loss is not None else zero
    return {"loss": w.alpha_ce * soft_ce + w.alpha_lm * lm + w.alpha_cos * cos, "soft_ce": soft_ce, "lm": lm,
            "cos": cos}


class DistillTask(PretrainTask):
    """Pretraining's objective batches over token shards; the loss is the triple loss against
    a frozen teacher, kept on the task (not the Trainer's model: it is neither trained nor saved)."""

    SHOWN = {"soft_ce": "soft_ce", "lm": "student_lm", "cos": "hidden_cos"}  # the terms as metrics.jsonl names them

    def __init__(self, teacher, weights: DistillWeights, objective, train_data, val_data, options, world=1, *,
                 fingerprint: str) -> None:
        super().__init__(objective, train_data, val_data, options, world, fingerprint=fingerprint)
        self.teacher, self.weights, self.masked_lm = teacher.eval().requires_grad_(False), weights, objective.name == "mlm"

    def parts(self, model, inputs: dict):
        """(the loss and its terms, distill_loss's; the student's output)."""
        with torch.no_grad():
            teacher = self.teacher(**{k: v for k, v in inputs.items() if k != "labels"})
        student = model(**inputs)
        return distill_loss(student, teacher, inputs["labels"], inputs.get("attention_mask"), self.weights,
                            self.masked_lm), student

    def loss(self, model, batch: Batch) -> Loss:
        """The triple loss; each term of it a metric (soft_ce / student_lm / hidden_cos), token-weighted."""
        parts, student = self.parts(model, batch.inputs)
        n = batch.targets
        return Loss(parts["loss"], {self.SHOWN[k]: Mean(float(v.detach()) * n, n) for k, v in parts.items()
                                    if k in self.SHOWN}, student)

    def evaluate(self, model, autocast, device: torch.device) -> dict:
        """The terms over the fixed validation batches (token-weighted), as eval_* (the epoch summary's)."""
        sums, count = {}, 0
        for batch in map(self.as_batch, self.val_batches):
            if batch.targets:
                with autocast():
                    parts, _ = self.parts(model, batch.to(device).inputs)
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * batch.targets
                count += batch.targets
        if not count:
            return {}
        means = {k: v / count for k, v in sums.items()}
        return {"eval_loss": means["loss"], "eval_soft_ce": means["soft_ce"], "eval_lm": means["lm"],
                "eval_ppl": math.exp(min(means["lm"], 700.0)), "eval_cos": means["cos"]}


# ---------------------------------------------------------------------------- the student
def every_other_layer(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layers the student's are copied from: evenly spaced, first and last kept --
    one out of two for 12 -> 6 ([0, 2, 4, 7, 9, 11], transformers' extract_distilbert.py)."""
    if student_layers > teacher_layers:
        raise PlmlabError(f"the student has {student_layers} layers, more than the teacher's {teacher_layers}: it "
                          "cannot take its layers from the teacher (pass --init random)")
    if student_layers == 1:
        return [0]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")


def init_from_teacher(student: torch.nn.Module, teacher: torch.nn.Module) -> None:
    """Copy the embeddings, the head and every other teacher layer into the student (section 3:
    "taking one layer out of two"). What the student lacks (token types, pooler, NSP head) is
    dropped; what it has and the teacher does not, or in another shape, is an error."""
    picks = every_other_layer(student.config.n_layers, teacher.config.n_layers)
    theirs = teacher.state_dict()
    state = {}
    for name, ours in student.state_dict().items():
        source = LAYER.sub(lambda m: f"{m.group(1)}layers.{picks[int(m.group(2))]}.", name)
        if source not in theirs or theirs[source].shape != ours.shape:
            found = f"shape {tuple(theirs[source].shape)}" if source in theirs else "no such tensor"
            raise PlmlabError(f"the student cannot be initialised from the teacher: its {name} has shape "
                              f"{tuple(ours.shape)}, the teacher's {source} {found} (pass --init random)")
        state[name] = theirs[source]
    student.load_state_dict(state)
    student.tie_weights()


def make_student(spec: str, teacher, init: str, seed: int):
    """`half` (the teacher's config with half its layers), a preset (its vocabulary and special ids
    the teacher's) or a checkpoint directory."""
    tc = teacher.config
    torch.manual_seed(seed)  # a preset student's initialisation (and dropout's stream)
    if spec == HALF or spec in PRESETS:
        config = tc.replace(n_layers=max(1, tc.n_layers // 2)) if spec == HALF else get_preset(spec).replace(
            vocab_size=tc.vocab_size, pad_token_id=tc.pad_token_id, bos_token_id=tc.bos_token_id,
            eos_token_id=tc.eos_token_id)
        check_pair(tc, config)
        student = build_model(config)
        if init == "teacher":
            check_takes_layers(spec, config, tc)
            init_from_teacher(student, teacher)
        return student
    student = load_pretrained(spec).train()
    check_pair(tc, student.config)
    return student


def check_takes_layers(spec: str, student, teacher) -> None:
    """A student initialised from the teacher copies its layers: it can be no deeper, and it needs
    the teacher's width (a base-size preset cannot take a mini teacher's layers); one line that
    says what to pass instead."""
    every_other_layer(student.n_layers, teacher.n_layers)
    if _width(student) == _width(teacher):
        return
    presets = {name: get_preset(name) for name in PRESETS}
    fits = [name for name, c in presets.items() if (c.arch, c.head, _width(c)) == (teacher.arch, teacher.head,
                                                                                   _width(teacher))
            and c.n_layers < teacher.n_layers]
    raise PlmlabError(f"--student {spec} is {student.d_model} wide ({student.n_heads} heads, d_ff {student.d_ff}) and "
                      f"the teacher {teacher.d_model} ({teacher.n_heads} heads, d_ff {teacher.d_ff}): a student "
                      f"initialised from the teacher takes its layers, so it needs the teacher's width; pass "
                      f"--student half (the default: the teacher with half its layers)"
                      f"{''.join(f', --student {name}' for name in fits[:2])} or --init random")


def _width(config) -> tuple[int, int, int]:
    return config.d_model, config.n_heads, config.d_ff


def teacher_objective(teacher) -> str:
    """The objective (a TEACHERS key) whose models `teacher` is, or one line why it cannot teach."""
    found = [name for name, fits in TEACHERS.items() if fits.fits(teacher)]
    if not found or family_of(teacher).answers_as_blank:
        raise PlmlabError(f"the teacher must be an encoder with an MLM head or a decoder with an LM head and 1-D "
                          f"positions, not a {teacher.arch} with head {teacher.head!r} and {teacher.position} positions")
    return found[0]


def check_pair(teacher, student) -> None:
    """What distillation needs of the teacher and the student configs (one line each)."""
    fits = TEACHERS[teacher_objective(teacher)]
    if not fits.fits(student) or family_of(student).answers_as_blank:
        raise PlmlabError(f"this teacher distils into {fits.wanted()} and 1-D positions, not a {student.arch} "
                          f"with head {student.head!r} and {student.position} positions")
    if student.vocab_size != teacher.vocab_size:
        raise PlmlabError(f"the teacher has {teacher.vocab_size} vocabulary ids and the student {student.vocab_size}: "
                          "their distributions are compared token by token, so the vocabularies must be the same")


# ---------------------------------------------------------------------------- the run
def distill(options: FinetuneOptions, log=print) -> list[dict]:
    """Distil the teacher into the student, evaluate each epoch, save OUT/final; the history."""
    if options.task != "distill" or "student" not in options.extra:
        raise PlmlabError("distill() takes the options of distill_options(...) (task 'distill' with a student)")
    if options.lora is not None:
        raise PlmlabError("distillation trains every weight of the student: the --lora-* options do not apply")
    return run.finetune(options, log, prepare=_prepare)


def _prepare(o: FinetuneOptions, dist: Dist) -> "run._Setup":
    x = {**DEFAULTS, **o.extra}
    if o.threads is not None:
        torch.set_num_threads(o.threads)
    device = dist.device(choose_device(o.device or "auto"))
    Precision(o.precision, device)
    teacher, tokenizer = load_model_and_tokenizer(o.model, o.tokenizer)
    objective_name = teacher_objective(teacher.config)  # checked before the student is built from it
    student = make_student(x["student"], teacher, x["init"], o.seed)
    weights = DistillWeights(x["temperature"], x["alpha_ce"], x["alpha_lm"], _alpha_cos(x["alpha_cos"], teacher, student))
    seq_len = min(o.max_length or 128, teacher.config.max_positions, student.config.max_positions)
    documents = read_corpus(x["corpus"]) if x["corpus"] else builtin_documents()
    train, val = build_token_data(documents, tokenizer)
    objective = build_objective(objective_name, tokenizer, seq_len, {})
    if objective.num_examples(train) == 0:
        raise PlmlabError(f"the corpus has {train.n_tokens} training tokens: too few for one sequence of {seq_len}")
    data = SimpleNamespace(seed=o.seed, batch_size=o.batch_size, seq_len=seq_len, eval_batches=x["eval_batches"])
    task = DistillTask(teacher.to(device), weights, objective, train, val, data, dist.world,
                       fingerprint=corpus_fingerprint(documents))
    steps = steps_per_epoch(objective.num_examples(train), o.batch_size, dist.world)
    return run._Setup(task, student.to(device), tokenizer, device, steps)


def _alpha_cos(given: float | None, teacher, student) -> float:
    """The cosine term needs one width; by default it is on when the widths agree."""
    same = teacher.config.d_model == student.config.d_model
    if given is None:
        return 1.0 if same else 0.0
    if given and not same:
        raise PlmlabError(f"--alpha-cos compares hidden states, but the teacher's are {teacher.config.d_model} wide "
                          f"and the student's {student.config.d_model} (pass --alpha-cos 0)")
    return given
