"""Typed, validated configs of seqkit's tasks: plain data, saved with each run.

No TensorFlow here, so the CLI can build its options (and --help) quickly.
"""

import dataclasses
import numbers
import re
from dataclasses import dataclass, field

from seqkit.errors import SeqkitError

CELL_NAMES = ("rnn", "irnn", "lstm", "gru")
OPTIMIZER_NAMES = ("adam", "rmsprop", "sgd")
STRATEGIES = ("auto", "mirrored", "multiworker")
TASK_CHAR_LM = "char-lm"
TASK_CLASSIFY = "classify"
SYNTHETIC_TASKS = ("adding", "copy", "parity")
POOLINGS = ("last", "mean", "max", "attention")
DATA_FORMATS = ("auto", "csv", "tsv", "jsonl", "npz", "npy", "lines")
INPUT_KINDS = ("auto", "text", "numbers")
TOKENIZERS = ("char", "word")
CLASS_WEIGHTS = ("none", "balanced")
TASK_SEQ2SEQ = "seq2seq"
SEQ2SEQ_TASKS = ("addition", "reverse", "dates")
SOURCE_TOKENIZERS = ("char", "word")
TARGET_TOKENIZERS = ("char", "word", "space")
ATTENTIONS = ("none", "dot", "general", "additive")
DECODERS = ("greedy", "beam", "sample")
# The validation metrics each task's --monitor may name (Keras callbacks' monitor): a loss is best lowest,
# a score highest (seqkit.training.checkpoint.monitor_mode).
MONITORS = {TASK_CHAR_LM: ("val_loss",), TASK_CLASSIFY: ("val_loss", "val_accuracy"),
            TASK_SEQ2SEQ: ("val_loss", "val_exact_match")}
LR_SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")  # see seqkit.training.learning_rate
DTYPE_POLICIES = ("float32", "mixed_float16")  # Keras' names; mixed_float16: float16 compute, float32 weights

# --resume continues a run with its saved config. These fields set how long and
# how fast it trains, so a resume may change them (the change is recorded in the
# run's config.json). Every other field fixes the model, the data or the order of
# the batches, and a resume must not change it.
RESUMABLE = ("epochs", "steps", "lr", "clip_norm", "val_decode", "strategy", "keep", "patience", "max_time",
             "lr_schedule", "lr_decay", "warmup_steps", "lr_patience")
# The default --lr-decay of each schedule that has one: char-rnn's 0.97 per epoch, and a halving per
# plateau (Keras' and PyTorch's ReduceLROnPlateau cut to 0.1; halving suits runs of a few epochs).
LR_DECAY_DEFAULTS = {"step": 0.97, "exponential": 0.97, "plateau": 0.5}
# The fields that fix a task's model (its weights' shapes): --init-from takes them from the run it
# starts from (given ones must agree). inputs and features are resolved from the data afterwards.
MODEL_FIELDS = {
    TASK_CHAR_LM: ("cell", "units", "layers", "embedding_dim"),
    TASK_CLASSIFY: ("inputs", "tokens", "cell", "units", "layers", "bidirectional", "pooling", "embedding_dim"),
    TASK_SEQ2SEQ: ("source_tokens", "target_tokens", "reverse_source", "cell", "units", "layers", "bidirectional",
                   "attention", "embedding_dim"),
}
# classify's defaults that depend on what it reads; the fields are None in ClassifyConfig until the
# inputs are known (ClassifyConfig.with_defaults), and a run saves the values it used. Text: the model
# that scores best on short text in scripts/bench_names.py (surnames by origin; docs/benchmarks.md):
# read both ways and max-pooled (Conneau et al. 2017's BiLSTM-max), wider, dropout, a cosine schedule
# after a warm-up (200 steps, or a tenth of the run if that is shorter), and model.keras the most
# accurate epoch. Numbers and the synthetic tasks: one forward LSTM read to its last step at a
# constant rate, the model the long-memory tasks (adding, copy) are defined for.
INPUT_DEFAULTS = {
    "text": {"units": 256, "bidirectional": True, "pooling": "max", "embedding_dim": 128, "dropout": 0.5,
             "lr": 3e-3, "lr_schedule": "cosine", "warmup_steps": 200, "epochs": 40, "monitor": "val_accuracy"},
    "numbers": {"units": 128, "bidirectional": False, "pooling": "last", "embedding_dim": 64, "dropout": 0.0,
                "lr": 1e-3, "lr_schedule": "constant", "warmup_steps": 0, "epochs": 10, "monitor": "val_loss"},
}
# Values that mean "resolve it when the run starts" (from the data, or a random
# seed); the run saves the resolved value, which such a value given on resume keeps.
UNRESOLVED = {"seed": -1, "inputs": "auto", "features": 0, "max_target_length": 0, "steps_per_epoch": 0}


def check_data_or_task(config, tasks, data_kind):
    """Exactly one of ``data`` and ``synthetic`` (the CLI's --synthetic), and a known task."""
    if config.synthetic and config.synthetic not in tasks:
        raise SeqkitError(f"unknown `synthetic` {config.synthetic!r}; choose one of {', '.join(tasks)}")
    if bool(config.data) == bool(config.synthetic):
        raise SeqkitError(f"pass either `data` FILE ({data_kind}) or `synthetic` {'|'.join(tasks)} "
                          "(a built-in synthetic task), " + ("not both" if config.data else "not neither"))


MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit
MAX_INT32 = 2**31 - 1  # TensorFlow's sizes, steps and shapes are int32


def check_count(value, name, at_most=MAX_INT32, why=""):
    """``value`` must be an integer in [1, ``at_most``]; else a one-line SeqkitError naming ``name``
    (an argument in backticks, e.g. ``"`units`"``; ``why``: the reason for the upper bound, said after it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise SeqkitError(f"{name} must be a positive integer; received {value!r}")
    if value > at_most:
        raise SeqkitError(f"{name} must be at most {at_most:,}{why}; received {value:,}")


def check_seed(seed, unset=-1):
    """``seed`` must be ``unset`` (pick one) or an integer in [0, MAX_SEED]."""
    if seed == unset:
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        pick = " (or -1: pick one)" if unset == -1 else ""
        raise SeqkitError(f"`seed` must be an integer in [0, {MAX_SEED}] (2**32 - 1){pick}; received {seed!r}")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text):
    """Seconds in a duration such as ``"90s"``, ``"20m"``, ``"1.5h"`` (a number > 0 and a
    unit: s, m or h); ``""`` (no limit) gives None. Anything else: a one-line
    SeqkitError naming ``max_time``."""
    if text == "":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh])\s*", text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)] if match else 0
    if not 0 < seconds < float("inf"):
        raise SeqkitError(f"`max_time` must be a duration > 0 with a unit, such as 90s, 20m or 2h; received {text!r}")
    return seconds


def check_options(config, positive, non_negative, choices):
    """The checks every task's config shares: ``positive`` integers, ``non_negative``
    numbers, ``choices`` (name -> allowed values), and the training options
    (dropout, validation share, learning rate, clip norm). Errors name the field (the CLI: its flag)."""

    def flag(name):
        return f"`{name}`"

    for name in positive:
        check_count(getattr(config, name), flag(name))
    for name in non_negative:
        if getattr(config, name) < 0:
            raise SeqkitError(f"{flag(name)} must be >= 0; received {getattr(config, name)}")
        if getattr(config, name) > MAX_INT32:
            raise SeqkitError(f"{flag(name)} must be at most {MAX_INT32:,}; received {getattr(config, name):,}")
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise SeqkitError(f"unknown {flag(name)} {getattr(config, name)!r}; choose one of {', '.join(allowed)}")
    if not 0 <= config.dropout < 1:
        raise SeqkitError(f"`dropout` must be in [0, 1); received {config.dropout}")
    if not 0 <= config.val_fraction < 1:
        raise SeqkitError(f"`val_fraction` must be in [0, 1); received {config.val_fraction}")
    if not config.lr > 0:
        raise SeqkitError(f"`lr` must be > 0; received {config.lr}")
    if config.clip_norm < 0:
        raise SeqkitError(f"`clip_norm` must be >= 0 (0 disables clipping); received {config.clip_norm}")
    if config.dtype_policy not in DTYPE_POLICIES:
        raise SeqkitError(f"unknown `dtype_policy` {config.dtype_policy!r}; choose one of {', '.join(DTYPE_POLICIES)}")
    check_seed(config.seed)
    for name in ("keep", "patience"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MAX_INT32:
            raise SeqkitError(f"{flag(name)} must be an integer >= 0 (0: {'keep all' if name == 'keep' else 'off'}); "
                              f"received {value!r}")
    if config.monitor not in MONITORS[config.task]:
        raise SeqkitError(f"unknown `monitor` {config.monitor!r} for {config.task}; choose one of "
                          f"{', '.join(MONITORS[config.task])}")
    if config.monitor != "val_loss" and config.val_fraction == 0:
        raise SeqkitError(f"`monitor` {config.monitor} is a validation metric, and `val_fraction` 0 leaves no "
                          "validation split; set `val_fraction` > 0 or drop `monitor`")
    if config.patience and config.val_fraction == 0:
        raise SeqkitError(f"`patience` stops on the {config.monitor.replace('_', ' ')}, and `val_fraction` 0 leaves "
                          "no validation split; set `val_fraction` > 0 or drop `patience`")
    parse_duration(config.max_time)
    if config.lr_schedule not in LR_SCHEDULES:
        raise SeqkitError(f"unknown `lr_schedule` {config.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    decay = config.lr_decay
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0 < decay <= 1
                              or (config.lr_schedule == "plateau" and decay == 1)):
        raise SeqkitError(f"`lr_decay` must be in (0, 1{')' if config.lr_schedule == 'plateau' else ']'} (the factor "
                          f"per {'plateau' if config.lr_schedule == 'plateau' else 'epoch'}); received {decay!r}")
    check = config.lr_patience
    if isinstance(check, bool) or not isinstance(check, numbers.Integral) or not 1 <= check <= MAX_INT32:
        raise SeqkitError(f"`lr_patience` must be an integer >= 1 (epochs); received {check!r}")
    if config.lr_schedule == "plateau" and config.val_fraction == 0:
        raise SeqkitError("`lr_schedule` plateau cuts the rate when the val loss stops falling, and `val_fraction` 0 "
                          "leaves no validation split; set `val_fraction` > 0 or choose another `lr_schedule`")
    check = config.warmup_steps
    if isinstance(check, bool) or not isinstance(check, numbers.Integral) or not 0 <= check <= MAX_INT32:
        raise SeqkitError(f"`warmup_steps` must be an integer >= 0 (0: none); received {check!r}")


@dataclass
class CharLMConfig:
    """Everything that defines a char-LM run; saved as the run's config.json."""

    task: str = TASK_CHAR_LM
    data: list = field(default_factory=list)  # text files or directories; empty: the default corpus
    glob: str = "**/*.txt"  # files to read inside a data directory
    errors: str = "strict"  # UTF-8 decoding errors: strict (fail) or replace
    max_chars: int = 1_000_000  # size cap of the default corpus (characters)
    cell: str = "lstm"  # lstm, gru, rnn (tanh) or irnn (ReLU + identity init)
    units: int = 256  # hidden size of each recurrent layer
    layers: int = 2  # stacked recurrent layers
    embedding_dim: int = 64  # size of the character embedding
    dropout: float = 0.0  # dropout between layers (as char-rnn)
    seq_len: int = 100  # truncated-BPTT length: characters per training window
    batch_size: int = 64  # windows per batch (the global batch under a strategy)
    epochs: int = 10  # evaluation rounds; one round is steps_per_epoch steps
    steps: int = 0  # total training steps (0: epochs x steps_per_epoch)
    steps_per_epoch: int = 0  # steps per round (0: one pass over the training text)
    lr: float = 2e-3  # learning rate
    lr_schedule: str = "constant"  # constant, step / exponential (x lr_decay per epoch), cosine (to 0 at the end),
    # or plateau (x lr_decay after lr_patience epochs without a lower val loss)
    lr_decay: float | None = None  # the factor of step, exponential, plateau (None: LR_DECAY_DEFAULTS)
    lr_patience: int = 2  # plateau: epochs without a lower val loss before the rate is cut
    warmup_steps: int = 0  # steps of linear warm-up from 0 to lr before the schedule (0: none)
    optimizer: str = "adam"  # adam, rmsprop (char-rnn) or sgd
    clip_norm: float = 5.0  # global gradient-norm clip (0 disables)
    dtype_policy: str = "float32"  # Keras dtype policy: float32, or mixed_float16 (--mixed-precision)
    val_fraction: float = 0.05  # tail of the text held out for validation
    stateful: bool = False  # carry the state across consecutive batches (char-rnn's TBPTT)
    seed: int = -1  # random seed (-1: pick one and record it)
    keep: int = 3  # newest checkpoints kept besides the best by --monitor (0: keep all, as char-rnn)
    patience: int = 0  # stop after N epochs without a better --monitor (0: off; Keras' EarlyStopping)
    monitor: str = "val_loss"  # the val metric that picks the best checkpoint (model.keras); only val_loss here
    max_time: str = ""  # training time budget, e.g. 90s, 20m, 2h ("": none)
    init_from: str = ""  # start from this run's weights (a run directory or a .keras file in one; "": none)
    strategy: str = "auto"  # tf.distribute strategy: auto, mirrored or multiworker
    out: str = "runs/char-lm"  # run directory

    def validate(self):
        check_options(
            self,
            positive=("units", "layers", "embedding_dim", "seq_len", "batch_size", "epochs", "max_chars"),
            non_negative=("steps", "steps_per_epoch"),
            choices={"cell": CELL_NAMES, "optimizer": OPTIMIZER_NAMES, "errors": ("strict", "replace"),
                     "strategy": STRATEGIES},
        )
        return self


@dataclass
class ClassifyConfig:
    """Everything that defines a sequence-classification run; saved as config.json."""

    task: str = TASK_CLASSIFY
    data: str = ""  # labelled training file: .csv, .tsv, .jsonl or .npz (empty: a synthetic task)
    format: str = "auto"  # csv, tsv, jsonl or npz; auto: from the file's extension
    text_column: str = "text"  # column (jsonl: key) holding each example's text or numbers
    label_column: str = "label"  # column (jsonl: key) holding each example's label
    inputs: str = "auto"  # text or numbers; auto: detected from the data (saved resolved)
    tokens: str = "char"  # text: char or word tokens (words lowercased, punctuation split off)
    max_vocab: int = 20_000  # text: most frequent tokens kept, the rest map to the unknown symbol
    max_length: int = 0  # keep the first N steps of longer sequences (0: keep all)
    features: int = 0  # numbers: values per time step (set from the data)
    synthetic: str = ""  # built-in task instead of data (CLI --synthetic): adding, copy or parity
    length: int = 100  # synthetic: sequence length T
    size: int = 10_000  # synthetic: examples generated for training + validation
    copy_length: int = 5  # copy: symbols to remember and recall
    cell: str = "lstm"  # lstm, gru, rnn (tanh) or irnn (ReLU + identity init)
    units: int | None = None  # hidden size of each recurrent layer, per direction (None: INPUT_DEFAULTS)
    layers: int = 1  # stacked recurrent layers
    bidirectional: bool | None = None  # read each sequence both ways, concatenated (None: INPUT_DEFAULTS)
    pooling: str | None = None  # sequence -> vector: last valid step, mean, max or attention (None: INPUT_DEFAULTS)
    embedding_dim: int | None = None  # text: size of the token embedding (None: INPUT_DEFAULTS)
    dropout: float | None = None  # dropout between layers and before the output layer (None: INPUT_DEFAULTS)
    class_weight: str = "none"  # none, or balanced: weight each class by N / (classes x its count)
    batch_size: int = 32  # examples per batch
    buckets: int = 0  # length buckets: each batch from one, padded to its bound (0: each batch to its longest)
    epochs: int | None = None  # evaluation rounds; one round is steps_per_epoch steps (None: INPUT_DEFAULTS)
    steps: int = 0  # total training steps (0: epochs x steps_per_epoch)
    steps_per_epoch: int = 0  # steps per round (0: one pass over the training examples)
    lr: float | None = None  # learning rate (None: INPUT_DEFAULTS)
    lr_schedule: str | None = None  # constant, step / exponential (x lr_decay per epoch), cosine (to 0 at the end),
    # or plateau (x lr_decay after lr_patience epochs without a lower val loss); None: INPUT_DEFAULTS
    lr_decay: float | None = None  # the factor of step, exponential, plateau (None: LR_DECAY_DEFAULTS)
    lr_patience: int = 2  # plateau: epochs without a lower val loss before the rate is cut
    warmup_steps: int | None = None  # steps of linear warm-up from 0 to lr first (0: none; None: INPUT_DEFAULTS)
    optimizer: str = "adam"  # adam, rmsprop or sgd
    clip_norm: float = 5.0  # global gradient-norm clip (0 disables)
    dtype_policy: str = "float32"  # Keras dtype policy: float32, or mixed_float16 (--mixed-precision)
    val_fraction: float = 0.1  # share of the examples held out for validation
    keep: int = 3  # newest checkpoints kept besides the best by --monitor (0: keep all, as char-rnn)
    patience: int = 0  # stop after N epochs without a better --monitor (0: off; Keras' EarlyStopping)
    monitor: str | None = None  # the val metric that picks the best checkpoint (model.keras) and that patience and
    # plateau watch: val_loss (lowest) or val_accuracy (highest; classification); None: INPUT_DEFAULTS
    max_time: str = ""  # training time budget, e.g. 90s, 20m, 2h ("": none)
    init_from: str = ""  # start from this run's weights (a run directory or a .keras file in one; "": none)
    seed: int = -1  # random seed (-1: pick one and record it)
    out: str = "runs/classify"  # run directory

    def input_kind(self):
        """``text`` or ``numbers``: what the run reads (the synthetic tasks: numbers), as far as known;
        ``auto`` before the data is read."""
        return "numbers" if self.synthetic else self.inputs

    def with_defaults(self, kind=None):
        """A copy with each field left None set from ``INPUT_DEFAULTS[kind]`` (default: ``input_kind()``).
        Without a validation split (``val_fraction`` 0) the default monitor is ``val_loss``."""
        kind = kind or self.input_kind()
        if kind not in INPUT_DEFAULTS:
            raise ValueError(f"the defaults depend on the inputs, and inputs={self.inputs!r}: read the data first "
                             "(seqkit.tasks.classify.train does), or pass kind='text' or 'numbers'")
        values = {name: value for name, value in INPUT_DEFAULTS[kind].items() if getattr(self, name) is None}
        if "monitor" in values and self.val_fraction == 0:
            values["monitor"] = "val_loss"
        return dataclasses.replace(self, **values)

    def validate(self):
        """Checks the fields (one-line SeqkitErrors naming the flag); fields left None are checked as
        their defaults for the inputs (text's, while those are not known). Returns ``self`` unchanged."""
        kind = self.input_kind()
        self.with_defaults(kind if kind in INPUT_DEFAULTS else "text").check()
        return self

    def check(self):
        check_options(
            self,
            positive=("max_vocab", "length", "size", "copy_length", "units", "layers", "embedding_dim", "batch_size",
                      "epochs"),
            non_negative=("steps", "steps_per_epoch", "max_length", "features", "buckets"),
            choices={"format": DATA_FORMATS[:5], "inputs": INPUT_KINDS, "tokens": TOKENIZERS, "pooling": POOLINGS,
                     "cell": CELL_NAMES, "optimizer": OPTIMIZER_NAMES, "class_weight": CLASS_WEIGHTS},
        )
        check_data_or_task(self, SYNTHETIC_TASKS, "labelled examples")
        if self.synthetic == "adding" and self.length < 2:
            raise SeqkitError(f"`length` must be >= 2 for the adding problem; received {self.length}")
        if self.synthetic == "copy" and self.length <= self.copy_length:
            raise SeqkitError(f"`length` ({self.length}) must exceed `copy_length` ({self.copy_length}) "
                              "for the copy task: the symbols come first, then the blanks")
        if self.synthetic in ("adding", "copy") and self.class_weight != "none":
            raise SeqkitError(f"`class_weight` applies to single-label classification, not `synthetic` "
                              f"{self.synthetic}; drop it")
        if self.synthetic == "adding" and self.monitor == "val_accuracy":
            raise SeqkitError("`monitor` val_accuracy needs classes, and the adding problem is a regression "
                              "(mean squared error); use `monitor` val_loss")
        return self


@dataclass
class Seq2SeqConfig:
    """Everything that defines a sequence-to-sequence run; saved as config.json."""

    task: str = TASK_SEQ2SEQ
    data: str = ""  # pairs file, one SOURCE<TAB>TARGET per line (empty: a synthetic task)
    synthetic: str = ""  # built-in task instead of data (CLI --synthetic): addition, reverse or dates
    size: int = 50_000  # synthetic: examples generated for training + validation
    digits: int = 3  # addition: most digits per operand
    length: int = 10  # reverse: longest string
    source_tokens: str = "char"  # char or word (words and punctuation marks)
    target_tokens: str = "char"  # char, word, or space (whitespace-separated symbols)
    max_vocab: int = 20_000  # per side: most frequent tokens kept, the rest read as <unk>
    reverse_source: bool = False  # feed each source reversed (Sutskever et al. 2014; Keras addition_rnn)
    cell: str = "lstm"  # lstm, gru, rnn (tanh) or irnn (ReLU + identity init), encoder and decoder
    units: int = 128  # hidden size of each recurrent layer (encoder: per direction)
    layers: int = 1  # stacked recurrent layers, in the encoder and in the decoder
    bidirectional: bool = False  # encoder reads the source both ways; a tanh layer bridges its states
    attention: str = "none"  # none (final-state bridge only), dot, general (Luong) or additive (Bahdanau)
    embedding_dim: int = 64  # size of the source and target token embeddings
    dropout: float = 0.0  # dropout before each recurrent layer and before the output layer
    batch_size: int = 64  # pairs per batch
    buckets: int = 0  # length buckets: each batch from one, padded to its bound (0: each batch to its longest)
    epochs: int = 10  # evaluation rounds; one round is steps_per_epoch steps
    steps: int = 0  # total training steps (0: epochs x steps_per_epoch)
    steps_per_epoch: int = 0  # steps per round (0: one pass over the training pairs)
    lr: float = 1e-3  # learning rate
    lr_schedule: str = "constant"  # constant, step / exponential (x lr_decay per epoch), cosine (to 0 at the end),
    # or plateau (x lr_decay after lr_patience epochs without a lower val loss)
    lr_decay: float | None = None  # the factor of step, exponential, plateau (None: LR_DECAY_DEFAULTS)
    lr_patience: int = 2  # plateau: epochs without a lower val loss before the rate is cut
    warmup_steps: int = 0  # steps of linear warm-up from 0 to lr before the schedule (0: none)
    optimizer: str = "adam"  # adam, rmsprop or sgd
    clip_norm: float = 5.0  # global gradient-norm clip (0 disables)
    dtype_policy: str = "float32"  # Keras dtype policy: float32, or mixed_float16 (--mixed-precision)
    val_fraction: float = 0.1  # share of the pairs held out for validation
    val_decode: int = 1000  # validation pairs decoded (greedy) each epoch for val_exact_match (0: off)
    max_target_length: int = 0  # longest training target in tokens (set from the data)
    keep: int = 3  # newest checkpoints kept besides the best by --monitor (0: keep all, as char-rnn)
    patience: int = 0  # stop after N epochs without a better --monitor (0: off; Keras' EarlyStopping)
    monitor: str = "val_loss"  # the val metric that picks the best checkpoint (model.keras) and that patience and
    # plateau watch: val_loss (lowest) or val_exact_match (highest; greedy decoding of --val-decode pairs)
    max_time: str = ""  # training time budget, e.g. 90s, 20m, 2h ("": none)
    init_from: str = ""  # start from this run's weights (a run directory or a .keras file in one; "": none)
    seed: int = -1  # random seed (-1: pick one and record it)
    out: str = "runs/seq2seq"  # run directory

    def validate(self):
        check_options(
            self,
            positive=("size", "digits", "length", "max_vocab", "units", "layers", "embedding_dim", "batch_size",
                      "epochs"),
            non_negative=("steps", "steps_per_epoch", "val_decode", "max_target_length", "buckets"),
            choices={"source_tokens": SOURCE_TOKENIZERS, "target_tokens": TARGET_TOKENIZERS, "attention": ATTENTIONS,
                     "cell": CELL_NAMES, "optimizer": OPTIMIZER_NAMES},
        )
        check_data_or_task(self, SEQ2SEQ_TASKS, "SOURCE<TAB>TARGET lines")
        if self.attention == "dot" and self.bidirectional:
            raise SeqkitError("`attention` dot needs encoder outputs as wide as the decoder's, but a "
                              "`bidirectional` encoder's are twice as wide; use `attention` general or additive")
        if self.monitor == "val_exact_match" and self.val_decode == 0:
            raise SeqkitError("`monitor` val_exact_match is measured on `val_decode` pairs, and `val_decode` 0 "
                              "turns it off; set `val_decode` > 0 or use `monitor` val_loss")
        return self
