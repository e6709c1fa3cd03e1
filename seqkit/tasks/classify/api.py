"""Sequence classification: text or numeric sequences to labels, and the synthetic long-range tasks.

Python API (the CLI only calls these):

    config = ClassifyConfig(data="reviews.csv", tokens="word", seed=0, out="runs/reviews")
    summary = train(config)                                  # writes the run directory
    scores = evaluate("runs/reviews", "held_out.csv")        # accuracy, macro-F1, per class, confusion
    rows = predict("runs/reviews", inputs=["a fine film"])   # [{"label": ..., "probabilities": {...}}]
    config, vocab, labels, model = load("runs/reviews")

    train(ClassifyConfig(synthetic="adding", length=150, cell="irnn", out="runs/adding"))
"""

import itertools
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqkit import training
from seqkit.config import TASK_CLASSIFY as TASK
from seqkit.config import ClassifyConfig, check_count
from seqkit.errors import SeqkitError
from seqkit.io import check_data_exists, check_writable
from seqkit.plots import plot_confusion, plot_history
from seqkit.tasks.classify.data import (
    TEST_SIZE,
    as_examples,
    balanced_weights,
    encode_inputs,
    encode_targets,
    eval_batches,
    is_regression,
    load_vocabulary,
    read_labels,
    synthetic_data,
    train_batches,
    training_data,
)
from seqkit.tasks.classify.model import build_model, compile_model, model_outputs, softmax
from seqkit.tasks.classify.scores import (
    classification_scores,
    regression_scores,
)
from seqkit.tasks.classify.sequences import read_examples, read_lines
from seqkit.training import rundir
from seqkit.training.checkpoint import load_weights

EVAL_DIR = "eval"


def train(config, resume=False, verbose="auto", given=None, callbacks=()):
    """Train a classifier (or a synthetic task) and write its run directory (see ``seqkit.training.rundir``).

    ``resume`` and ``given``: as ``seqkit.tasks.char_lm.train``; ``callbacks``: more Keras
    callbacks (as ``seqkit.tasks.seq2seq.train``).

    Returns a dict with the run directory, the number of steps, the last
    epoch's logs (loss, accuracy, val_loss, ...) and ``val_scores``, the
    final model's scores on the validation split (see ``seqkit.tasks.classify.scores``;
    None without one).
    """
    config = rundir.resolve_config(config, resume, given)
    with rundir.run_directory(config.out, resume) as out:
        return train_in(out, config, resume, verbose, callbacks)


def train_in(out, config, resume, verbose, callbacks=()):
    """``train`` inside the run directory ``out``, held (locked) by the caller."""
    x, y, labels, vocab = training_data(config, out, resume)
    warmup_defaulted = config.warmup_steps is None
    config = config.with_defaults()  # the inputs are known now: text's or numbers' defaults (config.INPUT_DEFAULTS)
    train_idx, val_idx = training.split_indices(int(x.nrows()), config)
    x_train, y_train = tf.gather(x, train_idx), y[train_idx]
    x_val, y_val = tf.gather(x, val_idx), y[val_idx]
    targets = [y_train]
    if config.class_weight == "balanced":
        targets.append(balanced_weights(y_train, len(labels)))
    batches, per_pass, bounds = train_batches(x_train, targets, config.batch_size, config.seed,
                                              training.bucket_count(config, len(train_idx)))
    epochs, steps_per_epoch, start, complete = training.plan_run(out, config, per_pass, resume)
    if complete:
        return complete
    if warmup_defaulted:  # the default warm-up is at most a tenth of the run
        config.warmup_steps = min(config.warmup_steps, (config.steps or epochs * steps_per_epoch) // 10)
    if not resume:
        if vocab is not None:
            vocab.save(out / rundir.VOCAB)
        rundir.write_json(out / rundir.LABELS, {"labels": labels})
    rundir.save_config(out, config, start["global_step"] if start else None)

    training.seed_everything(config.seed)
    vocab_size = len(vocab) if vocab is not None else 0
    with training.dtype_policy(config.dtype_policy):
        model = compile_model(build_model(config, vocab_size, len(labels), masked=not config.synthetic), config)
    fit_kwargs = {}
    if len(val_idx):
        fit_kwargs["validation_data"] = eval_batches(x_val, [y_val], config.batch_size, bounds)
    last = training.train_run(model, batches, out, epochs, steps_per_epoch, start, list(callbacks), verbose=verbose,
                              **training.run_limits(config), **fit_kwargs)
    plot_history(out, training.read_metrics(out),
                 ylabel="mean squared error" if is_regression(config) else "cross-entropy (nats)",
                 title=f"{config.synthetic or Path(config.data).name} loss")
    val_scores = None
    if len(val_idx):
        val_scores = score(model, config, x_val, y_val, labels, config.batch_size)
        write_scores(out, "val", val_scores)
    return {"run_dir": str(out), "steps": epochs * steps_per_epoch, **last, "val_scores": val_scores}


def load(path):
    """(config, vocab, labels, model) of a trained classifier: a run directory,
    or a ``.keras`` file inside one (e.g. a checkpoint). ``vocab`` is None for
    numeric inputs. The model carries the padding mask."""
    run_dir, weights = rundir.run_paths(path)
    config = rundir.read_config(run_dir, ClassifyConfig, TASK)
    labels = read_labels(run_dir)
    vocab = load_vocabulary(run_dir, config)
    model = build_model(config, len(vocab) if vocab is not None else 0, len(labels))
    return config, vocab, labels, load_weights(model, weights)


def evaluate(path, data=None, fmt="auto", text_column=None, label_column=None, batch_size=None):
    """Scores of a trained model on labelled held-out data (see ``seqkit.tasks.classify.scores``).

    ``data`` is a labelled file; for a synthetic task it may be None: a fresh
    test set of ``TEST_SIZE`` examples from the run's seed (a stream the
    training set was not drawn from). Writes ``eval/NAME.json`` and, for
    classification, ``eval/NAME-confusion.png`` into the run directory (NAME:
    the data file's stem, or ``test``); their paths are in ``files``. Text
    tokens the vocabulary lacks count as the unknown symbol (``unknown_tokens``).
    """
    check_data_exists(data)
    config, vocab, labels, model = load(path)
    unknown = 0
    check_writable(rundir.run_dir_of(path) / EVAL_DIR, "make the run directory writable, or evaluate a copy of it")
    if data:
        examples = read_examples(data, fmt, text_column or config.text_column, label_column or config.label_column,
                                 config.inputs)
        y = encode_targets(examples.labels, labels, examples.source, config)
        x, unknown = encode_inputs(examples, config, vocab)
        name = Path(data).stem
    elif config.synthetic:
        x, y = synthetic_data(config, "test", TEST_SIZE)
        name = "test"
    else:
        raise SeqkitError("nothing to evaluate on: pass `data` FILE, labelled examples held out from training")
    scores = score(model, config, x, y, labels, batch_size or config.batch_size)
    if config.inputs == "text":
        scores["unknown_tokens"] = unknown
    return {**scores, "files": write_scores(rundir.run_dir_of(path), name, scores)}


def predict(path, source=None, inputs=None, fmt="auto", batch_size=None):
    """Predictions for the examples in the file ``source`` (``"-"``: standard
    input, one example per line) or for ``inputs`` (a list of texts, or of
    arrays ``(T,)`` / ``(T, D)``), in order.

    Each prediction is a dict: ``{"label": ..., "probabilities": {label: p}}``;
    for the copy task ``label`` and ``probabilities`` are lists, one per
    recalled symbol; for the adding problem ``{"value": ...}``.
    """
    if (source is None) == (inputs is None):
        raise ValueError("pass either source (a file, or '-' for standard input) or inputs (a list), not both")
    if batch_size is not None:
        check_count(batch_size, "`batch_size`")
    config, vocab, labels, model = load(path)
    if source is not None:
        examples = read_examples(source, fmt, config.text_column, config.label_column, config.inputs,
                                 labelled=False)
    else:
        examples = as_examples(inputs, config)
    x, _ = encode_inputs(examples, config, vocab)
    return prediction_rows(model_outputs(model, x, batch_size or config.batch_size), config, labels)


def prediction_rows(outputs, config, labels):
    """One dict per row of the model's ``outputs`` (see ``predict``)."""
    if is_regression(config):
        return [{"value": float(v[0])} for v in outputs]
    rows = []
    for p in softmax(outputs):  # (C,) or, copy, (K, C)
        named = [dict(zip(labels, map(float, q))) for q in np.atleast_2d(p)]
        chosen = [labels[i] for i in np.atleast_2d(p).argmax(axis=-1)]
        rows.append({"label": chosen, "probabilities": named} if p.ndim == 2 else
                    {"label": chosen[0], "probabilities": named[0]})
    return rows


def predict_lines(path, lines, batch_size=None, name="standard input"):
    """Predictions for ``lines`` (an iterable of str, one example per line, as
    ``read_lines`` reads them, e.g. ``seqkit.io.stdin_lines()``), yielded in
    order, ``batch_size`` lines at a time as they are read: memory does not grow
    with the input, so an endless pipe is served as it flows. ``name`` names the
    source in error messages (with the line number)."""
    if batch_size is not None:
        check_count(batch_size, "`batch_size`")
    config, vocab, labels, model = load(path)
    batch_size = batch_size or config.batch_size
    batch, first = [], 1
    for line in itertools.chain(lines, [None]):
        if line is not None:
            batch.append(line)
        if batch and (line is None or len(batch) == batch_size):
            examples = read_lines(batch, name, config.inputs, first=first)
            x, _ = encode_inputs(examples, config, vocab)
            yield from prediction_rows(model_outputs(model, x, batch_size), config, labels)
            first += len(batch)
            batch = []
    if first == 1:
        raise SeqkitError(f"{name} holds no examples; pass at least one line")


def score(model, config, x, y, labels, batch_size):
    """Scores of ``model`` on ``(x, y)``: ``classification_scores`` or ``regression_scores``."""
    outputs = model_outputs(model, x, batch_size)
    if is_regression(config):
        return regression_scores(y, outputs)
    predicted = outputs.argmax(axis=-1)  # (N,) or, copy, (N, K)
    scores = classification_scores(y, predicted, labels)
    if predicted.ndim == 2:
        scores["sequence_accuracy"] = float((predicted == y).all(axis=1).mean())
    return scores


def write_scores(run_dir, name, scores):
    """``eval/NAME.json`` and, for classification, ``eval/NAME-confusion.png``; returns their paths."""
    folder = Path(run_dir) / EVAL_DIR
    folder.mkdir(exist_ok=True)
    files = [folder / f"{name}.json"]
    rundir.write_json(files[0], scores)
    if "confusion" in scores:
        title = f"{name}: accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}"
        files.append(plot_confusion(folder / f"{name}-confusion.png", scores["confusion"], scores["labels"], title))
    return [str(f) for f in files]
