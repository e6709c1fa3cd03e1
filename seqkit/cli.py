"""The ``seqkit`` command line: a thin layer over seqkit's Python API.

Each command parses its options and calls one library function. Errors the
library raises for bad input (``ValueError``, ``OSError``, ``SeqkitError``)
become one line on stderr and exit status 2; ``--debug`` shows the traceback.
"""

import dataclasses
import functools
import json
import os
import re
import sys
import tomllib
import warnings

import click

from seqkit import __version__
from seqkit.config import (
    ATTENTIONS,
    CELL_NAMES,
    CLASS_WEIGHTS,
    DATA_FORMATS,
    DECODERS,
    INPUT_DEFAULTS,
    INPUT_KINDS,
    LR_SCHEDULES,
    MONITORS,
    OPTIMIZER_NAMES,
    POOLINGS,
    SEQ2SEQ_TASKS,
    SOURCE_TOKENIZERS,
    STRATEGIES,
    SYNTHETIC_TASKS,
    TARGET_TOKENIZERS,
    TASK_CHAR_LM,
    TASK_CLASSIFY,
    TASK_SEQ2SEQ,
    TOKENIZERS,
    CharLMConfig,
    ClassifyConfig,
    Seq2SeqConfig,
)
from seqkit.errors import SeqkitError, SeqkitWarning, with_flags

USER_ERRORS = (SeqkitError, ValueError, OSError)
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; 8.1 prints the help itself


def quiet_tensorflow():
    """Import TensorFlow with its C++ start-up notices (oneDNN, no CUDA driver,
    CPU features) kept off the terminal: they are written to file descriptor 2
    before logging can be configured, so stderr is pointed at /dev/null while
    TensorFlow loads and probes its devices. Errors after that show as usual."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def progress_verbosity():
    """Keras' live progress bar on a terminal; one line per epoch in logs and pipes."""
    return 1 if sys.stdout.isatty() else 2


def toml_defaults(config_class):
    """A ``--config FILE.toml`` callback: the file's keys become the command's
    defaults (``ctx.default_map``), so flags given on the command line win."""

    fields = {f.name for f in dataclasses.fields(config_class)} - {"task"}

    def load(ctx, param, path):
        if path is None:
            return
        if not os.path.isfile(path):  # /dev/zero or a FIFO would be read forever
            raise click.BadParameter(f"{path} is not a regular file; pass a TOML file saved on disk")
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise click.BadParameter(f"{path} is not valid TOML: {e}") from e
        values = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise click.BadParameter(
                f"{path} has unknown keys {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}"
            )
        if isinstance(values.get("data"), str) and isinstance(config_class().data, list):  # repeatable --data
            values["data"] = [values["data"]]
        ctx.default_map = {**(ctx.default_map or {}), **values}

    return click.option(
        "--config", type=click.Path(exists=True, dir_okay=False), callback=load, is_eager=True,
        expose_value=False, help="TOML file of options (keys as below, e.g. units = 256); flags override it.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """seqkit: recurrent sequence models for Keras 3 / TensorFlow."""
    ctx.obj = {"debug": debug}


@cli.group()
def train():
    """Train a model; writes a run directory."""


def training_options(d, unit):
    """The optimisation options every ``train`` command shares, defaults from the config ``d``."""
    return [
        click.option("--batch-size", type=int, default=d.batch_size, show_default=True),
        click.option("--epochs", type=int, default=d.epochs, show_default=shown(d, "epochs")),
        click.option("--steps", type=int, default=d.steps, show_default=True,
                     help="Total training steps (overrides --epochs; 0: off)."),
        click.option("--steps-per-epoch", type=int, default=d.steps_per_epoch, show_default=True,
                     help=f"Steps between evaluations (0: one pass over the {unit})."),
        click.option("--lr", type=float, default=d.lr, show_default=shown(d, "lr")),
        click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=d.lr_schedule,
                     show_default=shown(d, "lr_schedule"),
                     help="step / exponential: x --lr-decay per epoch (char-rnn); cosine: to 0 at the last step; "
                     "plateau: x --lr-decay after --lr-patience epochs without a better --monitor."),
        click.option("--lr-decay", type=float, default=d.lr_decay,
                     help="The factor of --lr-schedule step / exponential (per epoch; default 0.97) or plateau "
                     "(per cut; default 0.5)."),
        click.option("--lr-patience", type=int, default=d.lr_patience, show_default=True,
                     help="--lr-schedule plateau: epochs without a better --monitor before the rate is cut."),
        click.option("--warmup-steps", type=int, default=d.warmup_steps, show_default=shown(d, "warmup_steps"),
                     help="Steps of linear warm-up from 0 to --lr before the schedule (0: none)."),
        click.option("--optimizer", type=click.Choice(OPTIMIZER_NAMES), default=d.optimizer, show_default=True),
        click.option("--clip-norm", type=float, default=d.clip_norm, show_default=True,
                     help="Global gradient-norm clip (0 disables)."),
        click.option("--val-fraction", type=float, default=d.val_fraction, show_default=True),
        click.option("--mixed-precision", "dtype_policy", flag_value="mixed_float16", default=d.dtype_policy,
                     help="Compute in float16, keep float32 weights (Keras' mixed_float16 policy, with dynamic loss "
                     "scaling); faster on GPUs with float16 units, slower on CPUs."),
        click.option("--keep", type=int, default=d.keep, show_default=True,
                     help="Newest checkpoints kept; the best by --monitor is always kept too (0: keep all)."),
        click.option("--monitor", type=click.Choice(MONITORS[d.task]), default=d.monitor,
                     show_default=shown(d, "monitor"),
                     help="The validation metric that picks the best checkpoint (model.keras) and that --patience "
                     "and --lr-schedule plateau watch; a loss is best lowest, a score highest."),
        click.option("--patience", type=int, default=d.patience, show_default=True,
                     help="Stop after N epochs without a better --monitor; model.keras is the best (0: off)."),
        click.option("--max-time", default=d.max_time, metavar="DURATION",
                     help="Stop training after this long (e.g. 90s, 20m, 2h), checkpoint and finish as at the end."),
        click.option("--init-from", default=d.init_from, metavar="RUN_DIR|FILE.keras",
                     help="Start from another run's weights (fine-tuning; char-rnn's -init_from): its model flags "
                     "and vocabulary are used, the optimizer starts afresh."),
    ]


def recurrent_options(d, units_help, layers_help=None):
    """--cell, --units and --layers, as every ``train`` command has them (the help texts differ)."""
    return [
        click.option("--cell", type=click.Choice(CELL_NAMES), default=d.cell, show_default=True),
        click.option("--units", type=int, default=d.units, show_default=shown(d, "units"), help=units_help),
        click.option("--layers", type=int, default=d.layers, show_default=True, help=layers_help),
    ]


def embedding_options(d):
    """--embedding-dim and --dropout, as every ``train`` command has them."""
    return [
        click.option("--embedding-dim", type=int, default=d.embedding_dim, show_default=shown(d, "embedding_dim")),
        click.option("--dropout", type=float, default=d.dropout, show_default=shown(d, "dropout")),
    ]


# How the text defaults of two options bend (seqkit.tasks.classify.train_in, ClassifyConfig.with_defaults).
TEXT_DEFAULT_NOTES = {"warmup_steps": ", at most a tenth of the run", "monitor": ", val_loss with --val-fraction 0"}


def shown(d, name):
    """``show_default`` of the option for field ``name`` of config ``d``: True, or where the default
    depends on the inputs (classify: None in the config), the defaults for text and for numbers."""
    if getattr(d, name) is not None:
        return True

    def value(v):
        return ("on" if v else "off") if isinstance(v, bool) else str(v)

    text = value(INPUT_DEFAULTS["text"][name]) + TEXT_DEFAULT_NOTES.get(name, "")
    return f"text: {text}; numbers, --synthetic: {value(INPUT_DEFAULTS['numbers'][name])}"


def given_options(ctx):
    """Names of the options the user set: on the command line, in ``--config``, or from the environment."""
    return {name for name in ctx.params if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}


def typed_options(ctx, options):
    """Those of ``options`` (names) typed on the command line: what a command that takes any run passes
    ``seqkit.tasks.arguments`` as ``given``, so one that does not apply to the run's task is refused."""
    return {name for name in options if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}


def synthetic_options(tasks):
    """--synthetic, and --task: its old name (hidden; it read as a run's task, char-lm / classify /
    seq2seq), still taken by ``synthetic_given``."""
    return [
        click.option("--synthetic", type=click.Choice(tasks), default=None,
                     help="A built-in synthetic task instead of --data."),
        click.option("--task", "task_alias", type=click.Choice(tasks), default=None, hidden=True),
    ]


def synthetic_given(ctx, options):
    """``given_options`` of a train command with --synthetic; a --task value (its deprecated name,
    which warns) moved from ``options`` into ``options["synthetic"]``."""
    given = given_options(ctx) - {"task_alias"}
    value = options.pop("task_alias")
    if value is None:
        return given
    if ctx.get_parameter_source("synthetic") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--task is the deprecated name of --synthetic; pass --synthetic alone", ctx)
    warnings.warn(f"--task is deprecated: the option is now --synthetic; pass --synthetic {value}", SeqkitWarning,
                  stacklevel=2)
    options["synthetic"] = value
    return given | {"synthetic"}


def report_training(summary, scores="", model_scores=""):
    """The lines a ``train`` command ends with: steps, the last epoch's loss and val loss (``scores``:
    more of its val metrics), the run directory; why it stopped early and which checkpoint
    model.keras is; ``model_scores``: model.keras's scores on the validation split."""
    if summary.get("complete"):
        click.echo(f"run {summary['run_dir']} is already complete ({summary['steps']} of {summary['planned_steps']} "
                   "steps trained); nothing to do: pass a larger --epochs or --steps to train it further")
        return
    line = f"trained {summary['steps']} steps" + (f": loss {summary['loss']:.4f}" if "loss" in summary else "")
    if "val_loss" in summary:
        line += f", val loss {summary['val_loss']:.4f}"
    line += scores + (" (last epoch)" if "loss" in summary else "")
    click.echo(line + f"; run directory {summary['run_dir']}")
    stopped = {"early_stopping": "stopped early: --patience epochs passed without a better --monitor",
               "max_time": "stopped at the --max-time budget"}.get(summary.get("stopped"))
    best = summary.get("best")
    if stopped or best:
        click.echo("; ".join(filter(None, [stopped, best and (
            f"model.keras is the best checkpoint (step {best['global_step']}, "
            f"{best['monitor'].replace('_', ' ')} {best[best['monitor']]:.4f}); "
            "the last weights are model_last.keras")])))
    if model_scores:
        click.echo(f"model.keras on the validation split: {model_scores}")


def run_options(d):
    """--seed, --out and --resume, as every ``train`` command has them."""
    return [
        click.option("--seed", type=int, default=d.seed, show_default=True, help="Random seed (-1: pick one)."),
        click.option("--out", default=d.out, show_default=True, help="Run directory."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint."),
    ]


def apply_options(f, options):
    for option in reversed(options):
        f = option(f)
    return f


def char_lm_options(f):
    d = CharLMConfig()
    options = [
        toml_defaults(CharLMConfig),
        click.option("--data", multiple=True, help="UTF-8 text file or directory (repeatable). "
                     "Default: the Python standard library's sources."),
        click.option("--glob", default=d.glob, show_default=True, help="Files to read inside a --data directory."),
        click.option("--errors", type=click.Choice(["strict", "replace"]), default=d.errors, show_default=True,
                     help="Non-UTF-8 bytes: fail, or replace them with U+FFFD."),
        click.option("--max-chars", type=int, default=d.max_chars, show_default=True,
                     help="Size cap of the default corpus."),
        *recurrent_options(d, "Hidden size per layer."),
        *embedding_options(d),
        click.option("--seq-len", type=int, default=d.seq_len, show_default=True, help="Characters per window."),
        *training_options(d, "text"),
        click.option("--stateful/--no-stateful", default=d.stateful, show_default=True,
                     help="Carry the state across consecutive batches (char-rnn's truncated BPTT)."),
        click.option("--strategy", type=click.Choice(STRATEGIES), default=d.strategy, show_default=True,
                     help="tf.distribute strategy (multiworker reads TF_CONFIG)."),
        *run_options(d),
    ]
    return apply_options(f, options)


@train.command("char-lm")
@char_lm_options
@click.pass_context
def train_char_lm(ctx, resume, **options):
    """Next-character language model (char-rnn)."""
    quiet_tensorflow()
    from seqkit.tasks import char_lm

    options["data"] = list(options["data"])
    summary = char_lm.train(CharLMConfig(**options), resume=resume, verbose=progress_verbosity(),
                            given=given_options(ctx))
    report_training(summary, f", val bpc {summary['val_bpc']:.3f}, val perplexity {summary['val_perplexity']:.2f}"
                    if "val_loss" in summary else "")


def classify_options(f):
    d = ClassifyConfig()
    options = [
        toml_defaults(ClassifyConfig),
        click.option("--data", default=d.data, help="Labelled training file: .csv, .tsv, .jsonl or .npz "
                     "(see README). Or pass --synthetic."),
        *synthetic_options(SYNTHETIC_TASKS),
        click.option("--format", type=click.Choice(DATA_FORMATS[:5]), default=d.format, show_default=True,
                     help="Format of --data (auto: from its extension)."),
        click.option("--text-column", default=d.text_column, show_default=True,
                     help="Column (jsonl: key) of the text or numbers."),
        click.option("--label-column", default=d.label_column, show_default=True),
        click.option("--inputs", type=click.Choice(INPUT_KINDS), default=d.inputs, show_default=True,
                     help="Whether the sequences are text or numbers (auto: from the data)."),
        click.option("--tokens", type=click.Choice(TOKENIZERS), default=d.tokens, show_default=True,
                     help="Text: characters, or lowercased words and punctuation."),
        click.option("--max-vocab", type=int, default=d.max_vocab, show_default=True,
                     help="Text: most frequent tokens kept."),
        click.option("--max-length", type=int, default=d.max_length, show_default=True,
                     help="Keep the first N steps of longer sequences (0: all)."),
        click.option("--length", type=int, default=d.length, show_default=True, help="--synthetic: sequence length T."),
        click.option("--size", type=int, default=d.size, show_default=True,
                     help="--synthetic: examples generated for training + validation."),
        click.option("--copy-length", type=int, default=d.copy_length, show_default=True,
                     help="--synthetic copy: symbols to recall."),
        *recurrent_options(d, "Hidden size per layer and direction."),
        click.option("--bidirectional/--no-bidirectional", default=d.bidirectional,
                     show_default=shown(d, "bidirectional")),
        click.option("--buckets", type=int, default=d.buckets, show_default=True,
                     help="Length buckets: each training batch holds sequences of similar length, padded to its "
                     "bucket's bound, so time goes to data rather than padding (0: off)."),
        click.option("--pooling", type=click.Choice(POOLINGS), default=d.pooling, show_default=shown(d, "pooling"),
                     help="Sequence to vector: last valid step, or mean / max / attention over valid steps."),
        *embedding_options(d),
        click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default=d.class_weight, show_default=True,
                     help="balanced: weight classes by N / (classes x count)."),
        *training_options(d, "examples"),
        *run_options(d),
    ]
    return apply_options(f, options)


@train.command("classify")
@classify_options
@click.pass_context
def train_classify(ctx, resume, **options):
    """Sequence classifier (text or numbers -> label), or a synthetic task (adding, copy, parity).

    \b
    seqkit train classify --data reviews.csv --tokens word --out runs/reviews
    seqkit train classify --synthetic adding --length 150 --cell irnn --out runs/adding
    """
    given = synthetic_given(ctx, options)
    quiet_tensorflow()
    from seqkit.tasks import classify

    options["synthetic"] = options["synthetic"] or ""
    summary = classify.train(ClassifyConfig(**options), resume=resume, verbose=progress_verbosity(), given=given)
    scores = summary["val_scores"]
    if scores and "mse" in scores:
        report_training(summary, model_scores=f"mse {scores['mse']:.4f} (baseline {scores['baseline_mse']:.4f})")
    else:
        report_training(summary, model_scores=f"accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}"
                        if scores else "")


def seq2seq_options(f):
    d = Seq2SeqConfig()
    options = [
        toml_defaults(Seq2SeqConfig),
        click.option("--data", default=d.data, help="Pairs file: one SOURCE<TAB>TARGET per line (UTF-8). "
                     "Or pass --synthetic."),
        *synthetic_options(SEQ2SEQ_TASKS),
        click.option("--size", type=int, default=d.size, show_default=True,
                     help="--synthetic: pairs generated for training + validation."),
        click.option("--digits", type=int, default=d.digits, show_default=True,
                     help="--synthetic addition: most digits per operand."),
        click.option("--length", type=int, default=d.length, show_default=True,
                     help="--synthetic reverse: longest string."),
        click.option("--source-tokens", type=click.Choice(SOURCE_TOKENIZERS), default=d.source_tokens,
                     show_default=True, help="Source tokens: characters, or words and punctuation marks."),
        click.option("--target-tokens", type=click.Choice(TARGET_TOKENIZERS), default=d.target_tokens,
                     show_default=True, help="Target tokens: characters, words and punctuation marks, or "
                     "whitespace-separated symbols (space)."),
        click.option("--max-vocab", type=int, default=d.max_vocab, show_default=True,
                     help="Most frequent tokens kept per side (the rest read as <unk>)."),
        click.option("--reverse-source/--no-reverse-source", default=d.reverse_source, show_default=True,
                     help="Feed each source reversed (Sutskever et al. 2014, Keras addition_rnn)."),
        *recurrent_options(d, "Hidden size per layer (encoder: per direction).",
                           "Recurrent layers in the encoder and in the decoder."),
        click.option("--bidirectional/--no-bidirectional", default=d.bidirectional, show_default=True,
                     help="Bidirectional encoder."),
        click.option("--buckets", type=int, default=d.buckets, show_default=True,
                     help="Length buckets: each training batch holds sequences of similar length, padded to its "
                     "bucket's bound, so time goes to data rather than padding (0: off)."),
        click.option("--attention", type=click.Choice(ATTENTIONS), default=d.attention, show_default=True,
                     help="none: final-state bridge only; dot / general: Luong; additive: Bahdanau."),
        *embedding_options(d),
        *training_options(d, "pairs"),
        click.option("--val-decode", type=int, default=d.val_decode, show_default=True,
                     help="Validation pairs decoded each epoch for val_exact_match (0: off)."),
        *run_options(d),
    ]
    return apply_options(f, options)


@train.command("seq2seq")
@seq2seq_options
@click.pass_context
def train_seq2seq(ctx, resume, **options):
    """Encoder-decoder (pairs file, or a synthetic task: addition, reverse, dates).

    \b
    seqkit train seq2seq --data pairs.tsv --target-tokens space --attention general --out runs/g2p
    seqkit train seq2seq --synthetic addition --attention dot --reverse-source --out runs/addition
    """
    given = synthetic_given(ctx, options)
    quiet_tensorflow()
    from seqkit.tasks import seq2seq

    options["synthetic"] = options["synthetic"] or ""
    summary = seq2seq.train(Seq2SeqConfig(**options), resume=resume, verbose=progress_verbosity(), given=given)
    scores = summary["val_scores"]
    report_training(summary, model_scores=f"exact match {scores['exact_match']:.4f}, token error rate "
                    f"{scores['token_error_rate']:.4f}" if scores else "")


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--prime", help="char-lm: text that warms the state [default: a newline, or, for a model "
              "that knows none, a space or its first character].")
@click.option("--length", type=int, default=500, show_default=True, help="char-lm: characters to generate.")
@click.option("--temperature", type=float, default=0.8, show_default=True, help="0 means argmax.")
@click.option("--top-k", type=int, default=0, show_default=True, help="Sample among the k most likely (0: off).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling mass (1: off).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible samples.")
@click.option("--num-samples", type=int, default=1, show_default=True, help="char-lm: samples to draw.")
@click.option("--xla", is_flag=True, help="char-lm: compile the sampling loop with XLA (about 1 s once, then "
              "about twice as fast; for long texts).")
@click.option("--input", "inputs", multiple=True, help="seq2seq: a source text to decode (repeatable); "
              "default: one per line of standard input.")
@click.option("--decode", type=click.Choice(DECODERS), default="greedy", show_default=True,
              help="seq2seq: greedy, beam search, or sampling (--temperature, --top-k, --top-p, --seed).")
@click.option("--beam-width", type=int, default=5, show_default=True, help="seq2seq --decode beam: hypotheses kept.")
@click.option("--length-penalty", type=float, default=1.0, show_default=True,
              help="seq2seq --decode beam: α in log p / steps^α (0: raw log-probability).")
@click.option("--max-length", type=int, default=None,
              help="seq2seq: most output steps, </s> included [default: 2 x the longest training target + 2].")
@click.option("--n-best", type=int, default=1, show_default=True,
              help="seq2seq --decode beam: print the N best hypotheses with their scores.")
@click.option("--unknown", type=click.Choice(["error", "map"]), default="error", show_default=True,
              help="seq2seq: source tokens not in the vocabulary are an error, or read as <unk>.")
@click.pass_context
def generate(ctx, path, **options):
    """Generate from a run: char-LM text (streams to stdout), or seq2seq outputs, one line per input.

    \b
    seqkit generate runs/shakespeare --prime "ROMEO:" --length 500
    seqkit generate runs/addition --input "535+61" --decode beam --beam-width 5
    cat sources.txt | seqkit generate runs/g2p
    """
    from seqkit import tasks

    task = tasks.run_task(path)
    quiet_tensorflow()
    function = tasks.task_function(task, "generate", path)
    options, show = GENERATE_OUTPUTS[task](path, tasks.arguments(function, task, options, typed_options(ctx, options)))
    show(function(path, **options))


def texts_output(path, options):
    """char-lm's ``generate`` on stdout: sample 0 streams, its prime first (the shell escapes in --prime
    read, or the model's default prime); more samples print once drawn, each under a header.
    Returns ``(options, show)``: the arguments with the prime and the stream, and what prints the result."""
    from seqkit.tasks import char_lm

    prime = char_lm.default_prime(char_lm.vocabulary(path)) if options["prime"] is None else unescape(options["prime"])
    if options["num_samples"] != 1:
        def show(texts):
            for i, text in enumerate(texts):
                click.echo(f"--- sample {i + 1} ---\n{prime}{text}")

        return {**options, "prime": prime}, show
    pending = [prime]

    def stream(text):
        click.echo(pending.pop() + text if pending else text, nl=False)

    return {**options, "prime": prime, "on_text": stream}, lambda texts: click.echo()


def decoded_output(path, options):
    """seq2seq's ``generate`` on stdout: each input's output as its batch is decoded, one line (--n-best:
    the hypotheses with their scores, then a blank line); the inputs are standard input's lines when
    no --input is given. Returns ``(options, show)`` as ``texts_output``."""
    from seqkit.io import stdin_lines

    def on_output(result):
        if options["n_best"] == 1:
            click.echo(result)
            return
        for text, score in result:
            click.echo(f"{text}\t{score:.4f}")
        click.echo()

    return {**options, "inputs": options["inputs"] or stdin_lines(), "on_output": on_output}, lambda results: None


GENERATE_OUTPUTS = {TASK_CHAR_LM: texts_output, TASK_SEQ2SEQ: decoded_output}


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--data", multiple=True, help="Held-out data: UTF-8 text file(s) for a char-lm run; one labelled "
              "file for a classify run (a synthetic task without --data: a fresh test set).")
@click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="char-lm: non-UTF-8 bytes fail, or become U+FFFD.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS[:5]), default="auto", show_default=True,
              help="classify: format of --data (auto: from its extension).")
@click.option("--decode", type=click.Choice(DECODERS[:2]), default="greedy", show_default=True,
              help="seq2seq: greedy or beam search.")
@click.option("--beam-width", type=int, default=5, show_default=True, help="seq2seq --decode beam: hypotheses kept.")
@click.option("--length-penalty", type=float, default=1.0, show_default=True,
              help="seq2seq --decode beam: α in log p / steps^α.")
@click.option("--max-length", type=int, default=None,
              help="seq2seq: most output steps, </s> included [default: 2 x the longest training target + 2].")
@click.pass_context
def evaluate(ctx, run_dir, data, **options):
    """Score a trained model on held-out data.

    char-lm: loss, bits/char, perplexity. classify: accuracy, macro-F1,
    per-class precision/recall and the confusion matrix (also written to
    RUN_DIR/eval/ as JSON and PNG); the adding problem: MSE and its baseline.
    seq2seq: exact match, token error rate, BLEU (word and space targets;
    sacrebleu, 0-100, with its signature) of the decoded --data pairs (a
    synthetic task without --data: a fresh test set); scores and predictions
    are written to RUN_DIR/eval/.
    """
    from seqkit import tasks

    task = tasks.run_task(run_dir)
    quiet_tensorflow()
    function = tasks.task_function(task, "evaluate", run_dir)
    held_out, show = EVALUATE_OUTPUTS[task]
    arguments = tasks.arguments(function, task, options, typed_options(ctx, options))
    show(function(run_dir, held_out(task, data), **arguments))


def text_files(task, data):
    """char-lm's held-out data: the --data text files, one or more."""
    if not data:
        raise click.UsageError(f"Missing option '--data': held-out text file(s) to score the {task} run on")
    return list(data)


def one_file(noun):
    """A task's held-out data as one --data ``noun`` (None without --data: its own test set, where it has one)."""

    def held_out(task, data):
        if len(data) > 1:
            raise click.UsageError(f"a {task} run is scored on one --data {noun}; pass one")
        return data[0] if data else None

    return held_out


def show_text_scores(scores):
    click.echo(
        f"loss {scores['loss']:.4f} nats/char  bpc {scores['bpc']:.4f}  perplexity {scores['perplexity']:.3f}  "
        f"over {scores['chars']:,} characters ({scores['unknown_chars']} unknown)"
    )


def show_classify_scores(scores):
    from seqkit.tasks.classify.scores import format_scores

    click.echo(format_scores(scores), nl=False)
    if scores.get("unknown_tokens"):
        click.echo(f"{scores['unknown_tokens']} tokens were not in the vocabulary (scored as unknown)")
    click.echo("wrote " + ", ".join(scores["files"]))


def show_sequence_scores(scores):
    click.echo(f"exact match {scores['exact_match']:.4f}  token error rate {scores['token_error_rate']:.4f}"
               + (f"  BLEU {scores['bleu']:.2f}" if "bleu" in scores else "")
               + f"  over {scores['examples']:,} pairs ({scores['decode']} decoding)")
    if "bleu" in scores:
        click.echo(f"BLEU signature {scores['bleu_signature']} (sacrebleu, on the run's target tokens)")
    if scores["unknown_tokens"]:
        click.echo(f"{scores['unknown_tokens']} source tokens were not in the vocabulary (read as <unk>)")
    click.echo("wrote " + ", ".join(scores["files"]))


# evaluate, per task: (how its --data is read, what prints its scores)
EVALUATE_OUTPUTS = {TASK_CHAR_LM: (text_files, show_text_scores),
                    TASK_CLASSIFY: (one_file("file"), show_classify_scores),
                    TASK_SEQ2SEQ: (one_file("pairs file"), show_sequence_scores)}


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--input", "source", default="-", show_default=True,
              help="Examples to classify: .csv, .tsv, .jsonl, .npz, .npy, or .txt (one per line); "
              "- reads standard input, one example per line.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
              help="Format of --input (auto: from its extension; lines for standard input).")
@click.option("--batch-size", type=int, default=None, help="Examples per batch [default: the run's].")
def predict(run_dir, source, fmt, batch_size):
    """Classify sequences with a classify run: one JSON line per example, in order.

    \b
    {"label": "pos", "probabilities": {"neg": 0.03, "pos": 0.97}}
    (copy task: a list of labels and of probabilities; adding problem: {"value": 1.23})
    """
    quiet_tensorflow()
    from seqkit.io import stdin_lines
    from seqkit.tasks import classify

    if source == "-" and fmt in ("auto", "lines"):  # streamed: each batch is answered as it is read
        rows = classify.predict_lines(run_dir, stdin_lines(), batch_size=batch_size)
    else:
        rows = classify.predict(run_dir, source=source, fmt=fmt, batch_size=batch_size)
    for row in rows:
        click.echo(json.dumps(row, ensure_ascii=False))


@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--name", help="Model name in the URL [default: the run directory's name].")
@click.option("--version", type=int, help="Version folder [default: the next free one]; never overwritten.")
@click.option("--format", "fmt", type=click.Choice(["saved_model", "tflite"]), default="saved_model",
              show_default=True, help="SavedModel for TF Serving, or TFLite (built-in ops) for devices.")
@click.option("--out", default=None,
              help="Base folder [default: saved_models (TF Serving's), tflite_models for --format tflite].")
@click.option("--quantize", type=click.Choice(["float16", "dynamic"]), default=None,
              help="TFLite post-training quantization: float16 weights, or dynamic-range int8 weights.")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="TFLite classify/seq2seq: fixed tokens per input [default: the run's --max-length, else any].")
def export_command(run_dir, name, version, fmt, out, quantize, max_length):
    """Export a run: a SavedModel (OUT/NAME/VERSION, string-in signatures) or TFLite models.

    \b
    --format tflite writes OUT/NAME/VERSION/ with metadata.json and
      char-lm: step.tflite   classify: classify.tflite
      seq2seq: encoder.tflite, decoder_step.tflite
    """
    quiet_tensorflow()
    from seqkit import export

    path = export.export(run_dir, name=name, version=version, out=out, format=fmt, quantize=quantize,
                         max_length=max_length)
    click.echo(f"exported {run_dir} to {path}")
    if fmt == "tflite":
        meta = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
        for model in meta["models"].values():
            click.echo(f"  {model['file']}: {model['bytes'] / 1024:,.1f} KiB (float32: "
                       f"{model['float32_bytes'] / 1024:,.1f} KiB), max |TFLite - TensorFlow| on fixed inputs "
                       f"{model['check']['max_abs_diff']:.2g}")


def model_call_options(command):
    """The flags both serving commands share: batching, deadlines, concurrency, config polling,
    monitoring (TF Serving's names where it has the flag)."""
    options = [
        click.option("--enable_batching", "--enable-batching", "enable_batching", type=click.BOOL, default=False,
                     is_flag=False, flag_value=True, help="Batch concurrent requests as TF Serving does."),
        click.option("--batching_parameters_file", "--batching-parameters-file", "batching_parameters_file",
                     type=click.Path(), help="TF Serving's BatchingParameters in text format (max_batch_size, "
                                             "batch_timeout_micros, max_enqueued_batches, num_batch_threads, "
                                             "allowed_batch_sizes)."),
        click.option("--rest_api_timeout_in_ms", "--rest-api-timeout-in-ms", "rest_api_timeout_in_ms",
                     type=click.IntRange(0), default=30000, show_default=True,
                     help="Deadline of a model call (REST; gRPC: or the client's, if sooner); 0: none."),
        click.option("--max-concurrent-per-model", "max_concurrent", type=click.IntRange(1),
                     help="Model calls run at once per model; the rest wait in order [default: four per core]."),
        click.option("--model_config_file_poll_wait_seconds", "--model-config-file-poll-wait-seconds",
                     "model_config_file_poll_wait_seconds", type=click.FloatRange(0), default=0.0, show_default=True,
                     help="Re-read --model_config_file this often and serve what it says (0: only at start)."),
        click.option("--access-log", is_flag=True, help="A line per request (REST and gRPC) on standard output."),
        click.option("--monitoring_config_file", "--monitoring-config-file", "monitoring_config_file",
                     type=click.Path(), help="TF Serving's MonitoringConfig in text format "
                                             "(prometheus_config { enable: true }): like --metrics."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@click.argument("base", default="saved_models", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True,
              help="REST port (TF Serving's default).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8500, show_default=True,
              help="gRPC port (0: no gRPC).")
@click.option("--max-body-bytes", type=click.IntRange(1), default=10 << 20, show_default=True,
              help="Largest request body.")
@click.option("--max-length", type=click.IntRange(1), default=2000, show_default=True,
              help="Largest generate length.")
@click.option("--file_system_poll_wait_seconds", "--file-system-poll-wait-seconds", "poll_seconds",
              type=click.FloatRange(0), default=1.0, show_default=True,
              help="Seconds between polls of BASE for new and removed versions (TF Serving's flag; 0: only at start).")
@click.option("--model-version-policy", "policy", default="latest", show_default=True,
              help="Versions served per model: latest, latest:N, all or specific:V,V (TF Serving's policies).")
@click.option("--metrics", is_flag=True, help="Serve Prometheus metrics (requests, latency, loads) over REST.")
@click.option("--metrics-path", default="/monitoring/prometheus/metrics", show_default=True,
              help="Path of the metrics (TF Serving's prometheus_config default).")
@click.option("--model_config_file", "--model-config-file", "model_config_file", type=click.Path(),
              help="TF Serving's ModelServerConfig (text format): names, base paths, version policies and labels "
                   "(instead of BASE).")
@click.option("--model_name", "--model-name", "model_name", help="With --model_base_path: the model's name.")
@click.option("--model_base_path", "--model-base-path", "model_base_path", type=click.Path(),
              help="Serve the one model whose version folders are here (instead of BASE).")
@click.option("--op-allowlist", metavar="seqkit|FILE",
              help="Load only models whose every op is listed: 'seqkit' (the ops of seqkit's own exports) or a "
                   "file of op names. SavedModels are programs: without it, trust every folder you serve.")
@model_call_options
def serve(base, host, port, grpc_port, max_body_bytes, max_length, poll_seconds, policy, metrics, metrics_path,
          model_config_file, model_name, model_base_path, op_allowlist, **model_calls):
    """Serve the models under BASE with TensorFlow Serving's REST and gRPC APIs, picking up
    versions as they are exported and dropping those removed.

    \b
    seqkit's flags: --port is REST (8501), --grpc-port gRPC (8500), bound to 127.0.0.1.
    A tensorflow_model_server command line runs unchanged under seqkit model-server.
    """
    quiet_tensorflow()
    from seqkit import serve as serving

    serving.serve(base, host=host, port=port, grpc_port=grpc_port, max_body_bytes=max_body_bytes,
                  max_length=max_length, policy=policy, poll_seconds=poll_seconds, metrics=metrics,
                  metrics_path=metrics_path, model_config_file=model_config_file, model_name=model_name,
                  model_base_path=model_base_path, op_allowlist=op_allowlist, **model_calls, log=click.echo)


@cli.command("model-server", context_settings={"help_option_names": ["--help", "-h"]})
@click.option("--port", "grpc_port", type=click.IntRange(0, 65535), default=8500, show_default=True,
              help="gRPC port (tensorflow_model_server's --port).")
@click.option("--rest_api_port", "port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="REST port (0: no REST, as tensorflow_model_server).")
@click.option("--model_name", default="default", show_default=True, help="Name of the --model_base_path model.")
@click.option("--model_base_path", type=click.Path(), help="Folder of one model's numeric version folders.")
@click.option("--model_config_file", type=click.Path(),
              help="ModelServerConfig in text format (names, base paths, version policies, version labels).")
@click.option("--file_system_poll_wait_seconds", "poll_seconds", type=click.FloatRange(0), default=1.0,
              show_default=True, help="Seconds between polls of the base paths (0: only at start).")
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Interface for both APIs (seqkit's; tensorflow_model_server binds every interface).")
@click.option("--metrics", is_flag=True, help="seqkit's: Prometheus metrics over REST.")
@model_call_options
def model_server(grpc_port, port, model_name, model_base_path, model_config_file, poll_seconds, host, metrics,
                 **model_calls):
    """tensorflow_model_server's command line over seqkit's server: --port is gRPC,
    --rest_api_port REST, --model_name/--model_base_path or --model_config_file say what
    to serve, with TF Serving's defaults (latest version, 1 s polls)."""
    # The parameters carry serving.serve's names (--port is grpc_port, --rest_api_port is port),
    # so that flags_of prints the library's `port` in an error as --rest_api_port.
    quiet_tensorflow()
    from seqkit import serve as serving

    if not model_base_path and not model_config_file:
        raise SeqkitError("pass --model_base_path (with --model_name) or --model_config_file: what to serve")
    serving.serve(None, host=host, port=port, grpc_port=grpc_port, policy="latest", poll_seconds=poll_seconds,
                  metrics=metrics, model_config_file=model_config_file,
                  model_name=None if model_config_file else model_name, model_base_path=model_base_path,
                  **model_calls, log=click.echo)


class Subcommand(click.Command):
    """A subcommand that refuses an option of a sibling subcommand by naming the one it belongs to
    (``--radius is an option of 'seqkit diagnose exploding', not of 'seqkit diagnose history'``),
    and an option named as a sibling (``--history``) by naming that subcommand."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            siblings = getattr(ctx.parent.command, "commands", {}) if ctx.parent is not None else {}
            owners = [f"'{ctx.parent.command_path} {name}'" for name, command in siblings.items()
                      if command is not self and any(e.option_name in p.opts for p in command.params)]
            if owners:
                raise click.UsageError(f"{e.option_name} is an option of {' and '.join(owners)}, not of "
                                       f"'{ctx.command_path}'; drop it", ctx) from e
            if e.option_name.lstrip("-") in siblings:
                raise click.UsageError(f"{e.option_name} is not an option but a subcommand: run "
                                       f"'{ctx.parent.command_path} {e.option_name.lstrip('-')}'", ctx) from e
            raise


def show_report(report):
    """A diagnosis' summary, then the files it wrote."""
    click.echo(report["summary"], nl=False)
    click.echo("wrote " + ", ".join(str(p) for p in report["files"]))


@cli.group()
def diagnose():
    """Measure vanishing and exploding gradients: ‖∂L_T/∂h_k‖ and ‖∂h_T/∂h_k‖ against T - k.

    \b
    seqkit diagnose gradients --compare rnn,irnn,lstm,gru --length 200
    seqkit diagnose gradients RUN_DIR    # a trained char-LM's top layer, on real text
    seqkit diagnose history RUN_DIR      # grad norm and clip rate over training
    seqkit diagnose exploding            # spectral radius > 1: diverges unclipped, trains clipped
    """


def cell_list(ctx, param, value):
    """--compare's comma-separated names as a list (None when not given)."""
    if value is None:
        return None
    cells = [c.strip() for c in value.split(",") if c.strip()]
    if not cells or len(set(cells)) != len(cells):
        raise click.UsageError(f"--compare {value!r} must name distinct cells, e.g. rnn,irnn,lstm,gru", ctx)
    for cell in cells:
        if cell not in CELL_NAMES:
            raise click.UsageError(f"unknown cell {cell!r} in --compare; choose from {', '.join(CELL_NAMES)}", ctx)
    return cells


@diagnose.command("gradients", cls=Subcommand)
@click.argument("run_dir", required=False, type=click.Path())
@click.option("--cell", type=click.Choice(CELL_NAMES), help="Diagnose a freshly initialised cell (no RUN_DIR).")
@click.option("--compare", callback=cell_list,
              help="Comma-separated cells to measure on one input, e.g. rnn,irnn,lstm,gru.")
@click.option("--units", type=int, default=None,
              help="Hidden size of --cell/--compare cells [default: 128] (not with RUN_DIR: the run's model sets it).")
@click.option("--length", type=int, default=200, show_default=True, help="Sequence length T.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Examples the norms are averaged over.")
@click.option("--input-dim", type=int, default=None,
              help="Features of the random N(0, 1) input of --cell/--compare cells [default: 32] (not with RUN_DIR).")
@click.option("--data", type=click.Path(), help="UTF-8 text to use as input instead of random input "
              "(RUN_DIR default: the run's training text).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), help="Output folder. Default: RUN_DIR/diagnose, or ./diagnose.")
def diagnose_gradients(run_dir, cell, compare, units, length, batch_size, input_dim, data, seed, out):
    """Gradient norms against T - k, for fresh cells or a char-LM run.

    Pass one of RUN_DIR (a trained char-LM run: its top recurrent layer, on
    real text), --cell NAME (one freshly initialised cell) or --compare
    a,b,... (fresh cells on one shared input). Writes gradients.png,
    gradients.csv and summary.txt.

    \b
    seqkit diagnose gradients --compare rnn,irnn,lstm,gru --length 200
    seqkit diagnose gradients --cell gru --units 256 --data input.txt
    seqkit diagnose gradients RUN_DIR
    """
    modes = [name for name, on in (("RUN_DIR", run_dir), ("--cell", cell), ("--compare", compare)) if on]
    if len(modes) > 1:
        raise click.UsageError(f"{' and '.join(modes)} cannot be combined; pass one of them")
    if not modes:
        raise click.UsageError("nothing to diagnose; pass a RUN_DIR, --cell NAME or --compare NAMES "
                               "(e.g. rnn,lstm,gru)")
    quiet_tensorflow()
    from seqkit.diagnose import gradients

    cells = compare or ([cell] if cell else None)
    report = gradients.diagnose(run_dir=run_dir, cells=cells, out=out, units=units, length=length,
                                batch_size=batch_size, input_dim=input_dim, seed=seed, data=data)
    show_report(report)


@diagnose.command("history", cls=Subcommand)
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(), help="Output folder. Default: RUN_DIR/diagnose.")
def diagnose_history(run_dir, out):
    """Grad norm, clip rate and loss over a run's training.

    Reads RUN_DIR/steps.csv (written by seqkit train); writes history.png and
    history.txt.
    """
    from seqkit.diagnose import history

    show_report(history.diagnose(run_dir, out=out))


@diagnose.command("exploding", cls=Subcommand)
@click.option("--radius", type=float, default=2.0, show_default=True, help="Recurrent spectral radius.")
@click.option("--clip-norm", type=float, default=1.0, show_default=True, help="The clipped run's norm.")
@click.option("--units", type=int, default=32, show_default=True, help="Hidden size of the SimpleRNN.")
@click.option("--length", type=int, default=30, show_default=True, help="Sequence length T.")
@click.option("--steps", type=int, default=300, show_default=True, help="SGD steps per run.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), help="Output folder. Default: ./diagnose.")
def diagnose_exploding(radius, clip_norm, units, length, steps, seed, out):
    """Spectral radius > 1: diverges unclipped, trains clipped.

    Trains a SimpleRNN with spectral radius --radius on the adding problem
    twice, without clipping and with --clip-norm, and compares the loss
    curves. Writes exploding.png, exploding.csv and exploding.txt.
    """
    quiet_tensorflow()
    from seqkit.diagnose import exploding

    report = exploding.diagnose(out=out, radius=radius, clip_norm=clip_norm, units=units, length=length, steps=steps,
                                seed=seed)
    show_report(report)


def unescape(text):
    """Turn the escapes a shell user types (backslash-n, backslash-t, double backslash) into characters."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def show_warning(message, category, filename, lineno, file=None, line=None, argv=None):
    """seqkit's warnings (``SeqkitWarning``) as one ``warning:`` line on stderr, its `arguments` as the flags
    of the command ``argv`` runs; others as Python shows them."""
    if issubclass(category, SeqkitWarning):
        click.echo(f"warning: {with_flags(' '.join(str(message).split()), flags_of(argv))}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv=None):
    """Console entry point: run the CLI, turning user errors into one line."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SeqkitWarning)
            warnings.showwarning = functools.partial(show_warning, argv=argv)
            cli.main(args=argv, prog_name="seqkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except NO_ARGS_IS_HELP as e:  # a group run without a subcommand: its help, as click shows it
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:  # bad flags: one line too, with where to look
        message = " ".join(e.format_message().split()).rstrip(".")
        ctx = getattr(e, "ctx", None)
        hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        click.echo(f"error: {message}{hint}", err=True)
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, SeqkitError):  # seqkit's own: its `arguments` as this command's flags
            message = with_flags(message, flags_of(argv))
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    except (MemoryError, *out_of_memory_errors()) as e:
        if debug:
            raise
        if disk_full(e):  # TensorFlow reports a full disk as RESOURCE_EXHAUSTED too
            click.echo("error: no space left on the device being written to; free space there, or pass an "
                       "--out on another device", err=True)
            sys.exit(2)
        reason = " ".join((str(e).strip().splitlines() or [type(e).__name__])[0].split())[:200]
        options = size_options(argv)
        fix = f"lower {', '.join(options[:-1])} or {options[-1]}" if len(options) > 1 else (
            f"lower {options[0]}" if options else "pass smaller inputs")
        click.echo(f"error: out of memory ({reason}); ask for less: {fix}", err=True)
        sys.exit(2)


SIZE_OPTIONS = ("--units", "--layers", "--batch-size", "--seq-len", "--length", "--num-samples", "--beam-width",
                "--max-length")


def invoked(argv):
    """The click command ``argv`` runs (the innermost group when it names no command)."""
    command, words = cli, [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    while isinstance(command, click.Group) and words:
        sub = command.commands.get(words.pop(0))
        if sub is not None:
            command = sub
    return command


def flags_of(argv):
    """``{library argument: flag}`` of the command ``argv`` runs (``val_fraction: --val-fraction``,
    ``inputs: --input``, ``run_dir: RUN_DIR``), with each switch's two settings
    (``bidirectional=False: --no-bidirectional``), for ``with_flags``; an argument the command
    does not take is written ``--argument-name``."""
    flags = {}
    for p in invoked(argv).params:
        flags[p.name] = p.opts[0] if isinstance(p, click.Option) else p.human_readable_name
        if isinstance(p, click.Option) and p.secondary_opts:
            flags.update({f"{p.name}=True": p.opts[0], f"{p.name}=False": p.secondary_opts[0]})
    return flags


def size_options(argv):
    """The size options (SIZE_OPTIONS) of the command ``argv`` runs, for the out-of-memory hint."""
    names = {opt for p in invoked(argv).params for opt in getattr(p, "opts", [])}
    return [o for o in SIZE_OPTIONS if o in names]


def disk_full(error):
    """Whether a RESOURCE_EXHAUSTED error is TensorFlow failing to write a file (a full disk), not memory."""
    text = str(error)
    return "No space left" in text or any(op in text for op in ("SaveV2", "MergeV2Checkpoints", "WriteFile"))


def out_of_memory_errors():
    """TensorFlow's out-of-memory error, when TensorFlow is loaded (a failed allocation)."""
    tf = sys.modules.get("tensorflow")
    return (tf.errors.ResourceExhaustedError,) if tf is not None else ()


if __name__ == "__main__":
    main()
