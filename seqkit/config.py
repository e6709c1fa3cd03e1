"""Typed, validated configs of seqkit's tasks: plain data, saved with each run.

No TensorFlow here, so the CLI can build its options (and --help) quickly.
"""

from dataclasses import dataclass, field

from seqkit.errors import SeqkitError

CELL_NAMES = ("rnn", "irnn", "lstm", "gru")
OPTIMIZER_NAMES = ("adam", "rmsprop", "sgd")
STRATEGIES = ("auto", "mirrored", "multiworker")
TASK_CHAR_LM = "char-lm"


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
    optimizer: str = "adam"  # adam, rmsprop (char-rnn) or sgd
    clip_norm: float = 5.0  # global gradient-norm clip (0 disables)
    val_fraction: float = 0.05  # tail of the text held out for validation
    stateful: bool = False  # carry the state across consecutive batches (char-rnn's TBPTT)
    seed: int = -1  # random seed (-1: pick one and record it)
    strategy: str = "auto"  # tf.distribute strategy: auto, mirrored or multiworker
    out: str = "runs/char-lm"  # run directory

    def validate(self):
        positive = ("units", "layers", "embedding_dim", "seq_len", "batch_size", "epochs", "max_chars")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SeqkitError(f"--{name.replace('_', '-')} must be a positive integer; received {value!r}")
        for name in ("steps", "steps_per_epoch"):
            if getattr(self, name) < 0:
                raise SeqkitError(f"--{name.replace('_', '-')} must be >= 0; received {getattr(self, name)}")
        choices = {"cell": CELL_NAMES, "optimizer": OPTIMIZER_NAMES, "errors": ("strict", "replace"),
                   "strategy": STRATEGIES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SeqkitError(f"unknown --{name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if not 0 <= self.dropout < 1:
            raise SeqkitError(f"--dropout must be in [0, 1); received {self.dropout}")
        if not 0 <= self.val_fraction < 1:
            raise SeqkitError(f"--val-fraction must be in [0, 1); received {self.val_fraction}")
        if not self.lr > 0:
            raise SeqkitError(f"--lr must be > 0; received {self.lr}")
        if self.clip_norm < 0:
            raise SeqkitError(f"--clip-norm must be >= 0 (0 disables clipping); received {self.clip_norm}")
        return self
