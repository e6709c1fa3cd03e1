"""Sequence classification: text or numeric sequences to labels, and the synthetic long-range tasks.

Python API (the CLI only calls these):

    config = ClassifyConfig(data="reviews.csv", tokens="word", seed=0, out="runs/reviews")
    summary = train(config)                                  # writes the run directory
    scores = evaluate("runs/reviews", "held_out.csv")        # accuracy, macro-F1, per class, confusion
    rows = predict("runs/reviews", inputs=["a fine film"])   # [{"label": ..., "probabilities": {...}}]
    config, vocab, labels, model = load("runs/reviews")

    train(ClassifyConfig(synthetic="adding", length=150, cell="irnn", out="runs/adding"))

The model: token ids -> Embedding (id 0 is padding, ``mask_zero``) or
values -> PaddingMask (NaN is padding), then ``layers`` recurrent layers
(each optionally Bidirectional), pooling over the valid steps, and a head:

* classification: ``C`` logits, softmax cross-entropy; the copy task has
  ``K`` heads of 8 logits, one per symbol to recall;
* regression (the adding problem): one linear unit, mean squared error.

The fields a config leaves None (``units``, ``bidirectional``, ``pooling``,
``dropout``, ``lr``, the schedule, ``epochs``, ``monitor``, ...) take
``seqkit.config.INPUT_DEFAULTS`` of the inputs once the data is read: text
a bidirectional LSTM max-pooled over its steps (BiLSTM-max, Conneau et al.
2017, "Supervised Learning of Universal Sentence Representations"), numbers
and the synthetic tasks one forward LSTM read to its last step.

Padding never changes a prediction: the mask reaches every recurrent layer
(a padded step leaves the state unchanged) and every pooling. Synthetic tasks
have no padding, so they train without a mask, on the layers' fused path.
"""

import itertools
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqkit import metrics, synthetic, training
from seqkit.config import TASK_CLASSIFY as TASK
from seqkit.config import ClassifyConfig, check_count
from seqkit.errors import SeqkitError
from seqkit.io import check_writable, read_run_json
from seqkit.layers import PaddingMask, SequencePooling, recurrent_layer
from seqkit.plots import plot_confusion, plot_history
from seqkit.sequences import Examples, read_examples, read_lines, steps_array
from seqkit.text.tokenize import split
from seqkit.text.vocab import Vocabulary
from seqkit.training import rundir
from seqkit.training.checkpoint import load_weights

PAD = 0  # token id of padding; vocabulary ids are shifted up by one
EVAL_DIR = "eval"
TEST_SIZE = 2000  # examples in a synthetic task's test set


def is_regression(config):
    return config.synthetic == "adding"


def outputs_per_example(config):
    """Labels predicted per example: ``copy_length`` for the copy task, else 1."""
    return config.copy_length if config.synthetic == "copy" else 1


# -- data ---------------------------------------------------------------------


def tokenize(texts, tokens):
    """The tokens of each text (``seqkit.text.tokenize``): characters, or lowercased words and punctuation marks."""
    return split(texts, tokens, lowercase=tokens == "word")


def build_vocabulary(texts, config):
    """The ``max_vocab`` most frequent tokens of the training texts (ties: first seen)."""
    counts = Counter(token for tokens in tokenize(texts, config.tokens) for token in tokens)
    return Vocabulary(token for token, _ in counts.most_common(config.max_vocab))


def ragged(sequences, dtype):
    """A ``tf.RaggedTensor`` ``(N, None[, D])`` holding each sequence once, unpadded."""
    values = np.concatenate([np.asarray(s, dtype=dtype) for s in sequences])
    return tf.RaggedTensor.from_row_lengths(values, np.array([len(s) for s in sequences], dtype=np.int64))


def encode_inputs(examples, config, vocab):
    """``(x, unknown)``: the sequences as a ragged tensor, cut to ``max_length``,
    and the number of tokens the vocabulary lacks (scored as the unknown symbol)."""
    if examples.inputs != config.inputs:
        raise SeqkitError(f"{examples.source} holds {examples.inputs} but this model reads {config.inputs}; "
                          f"pass {config.inputs}")
    limit = config.max_length or None
    if config.inputs == "numbers":
        if examples.features != config.features:
            raise SeqkitError(f"{examples.source} has {examples.features} values per step but the model reads "
                              f"{config.features}; pass sequences of {config.features} values per step")
        return ragged([s[:limit] for s in examples.x], np.float32), 0
    ids = [[vocab.index.get(token, 0) + 1 for token in tokens[:limit]] for tokens in tokenize(examples.x, config.tokens)]
    unknown = sum(row.count(1) for row in ids)  # id 1: the vocabulary's unknown symbol
    return ragged(ids, np.int32), unknown


def encode_labels(labels, names, source):
    """Class ids of ``labels``; a label the model was not trained on is an error."""
    index = {name: i for i, name in enumerate(names)}
    unseen = sorted(set(labels) - set(index))
    if unseen:
        first = labels.index(unseen[0]) + 1
        raise SeqkitError(f"{source} has labels the model was not trained on: "
                          f"{', '.join(map(repr, unseen[:5]))}{' ...' if len(unseen) > 5 else ''} (first in "
                          f"example {first}); the model knows {', '.join(map(repr, names[:10]))}"
                          f"{' ...' if len(names) > 10 else ''}: remove those rows or retrain with them")
    return np.array([index[label] for label in labels], dtype=np.int32)


def encode_targets(labels, names, source, config):
    """Targets: class ids, or (the adding problem) float values ``(N, 1)``."""
    if not is_regression(config):
        return encode_labels(labels, names, source)
    try:
        return np.array([[float(v)] for v in labels], dtype=np.float32)
    except ValueError as e:
        raise SeqkitError(f"{source} has a target that is not a number ({e}); this run is a regression") from None


def synthetic_data(config, split, n):
    """``(x, y)`` of ``n`` examples of the run's synthetic task, as model inputs and targets."""
    x, y = synthetic.examples(config.synthetic, n, config.length, config.seed, split, config.copy_length)
    y = y[:, None] if is_regression(config) else y  # regression targets (N, 1)
    return ragged(list(x), np.float32), y


def training_data(config, out, resume):
    """``(x, y, labels, vocab)`` of the whole training file (or synthetic set).

    Resolves ``config.inputs`` and ``config.features`` from the data. The
    vocabulary and labels are built from the data, or read from the run
    directory when resuming.
    """
    if config.synthetic:
        config.inputs, config.features = "numbers", synthetic.features(config.synthetic)
        x, y = synthetic_data(config, "train", config.size)
        return x, y, synthetic.labels(config.synthetic), None
    examples = read_examples(config.data, config.format, config.text_column, config.label_column, config.inputs)
    config.inputs, config.features = examples.inputs, examples.features
    if source := rundir.vocabulary_dir(out, config, resume):  # this run's, or those of the run it starts from
        labels = read_labels(source)
        vocab = Vocabulary.load(source / rundir.VOCAB) if config.inputs == "text" else None
    else:
        labels = sorted(set(examples.labels))
        if len(labels) < 2:
            raise SeqkitError(f"{examples.source} has one class only ({labels[0]!r} in column "
                              f"{config.label_column!r}); a classifier needs examples of at least two classes")
        vocab = build_vocabulary(examples.x, config) if config.inputs == "text" else None
    x, _ = encode_inputs(examples, config, vocab)
    return x, encode_labels(examples.labels, labels, examples.source), labels, vocab


def balanced_weights(y, n_classes):
    """Per-example weights ``N / (C * count(class))``, so every class weighs the same in the loss."""
    counts = np.bincount(y, minlength=n_classes)
    per_class = np.divide(len(y), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return per_class[y].astype(np.float32)


def padding_value(x):
    return PAD if x.dtype.is_integer else float("nan")


def batch_at(x, targets, indices, bounds=None):
    """Rows ``indices`` of ``x`` padded to their longest ``(B, T[, D])``, and the same rows of
    ``targets``; with ``bounds`` (``training.length_bounds``) padded further, to the first bound
    that holds the longest (one shape per bucket: XLA compiles once per bound, not per length)."""
    rows = tf.gather(x, indices)
    dense = rows.to_tensor(default_value=padding_value(x))
    if bounds is not None:
        dense = training.pad_to(dense, training.padded_width(tf.shape(dense)[1], bounds), padding_value(x))
    return (dense, *(tf.gather(t, indices) for t in targets))


def train_batches(x, targets, batch_size, seed, buckets=0):
    """Endless batches ``(x, y[, weights])``: each pass over the examples is a
    stateless shuffle seeded with ``(seed, pass)``, so batch ``k`` of the stream
    is the same in every run with that seed (resume skips exactly what was seen).
    Each batch is padded to its own longest sequence; with ``buckets`` > 0, each
    batch holds examples of one of that many length buckets and is padded to the
    bucket's bound (``training.bucketed_batches``). Returns ``(dataset, batches
    per pass, bounds or None)``."""
    targets = [tf.constant(t) for t in targets]
    indices = tf.range(int(x.nrows()), dtype=tf.int64)
    if not buckets:
        return (*training.shuffled_batches(indices, batch_size, seed, lambda i: batch_at(x, targets, i)), None)
    lengths = x.row_lengths().numpy()
    bounds = training.length_bounds(lengths, buckets)
    bucket = training.bucket_of(lengths, bounds)
    dataset, per_pass = training.bucketed_batches(indices, bucket, batch_size, seed,
                                                  lambda i, k: batch_at(x, targets, i, bounds))
    return dataset, per_pass, bounds


def eval_batches(x, targets, batch_size, bounds=None):
    """All examples once, in order: ``(x, y)`` batches (or ``(x,)`` without targets), each
    padded to its longest, or with ``bounds`` to the first bound that holds it."""
    targets = [tf.constant(t) for t in targets]
    return tf.data.Dataset.range(int(x.nrows())).batch(batch_size).map(lambda i: batch_at(x, targets, i, bounds))


# -- model --------------------------------------------------------------------


def build_model(config, vocab_size, n_labels, masked=True):
    """Inputs -> ``layers`` x recurrent layer -> pooling -> head, as a SeqModel.

    ``masked=False`` (numbers only) leaves out the padding mask, for data with
    none: the recurrent layers then take their fused path. Both forms have the
    same weights.
    """
    if config.inputs == "text":
        inputs = keras.Input((None,), dtype="int32", name="tokens")
        h = keras.layers.Embedding(vocab_size + 1, config.embedding_dim, mask_zero=True, name="embedding")(inputs)
    else:
        inputs = keras.Input((None, config.features), name="values")  # (B, T, D), NaN-padded
        h = PaddingMask(name="padding_mask")(inputs) if masked else inputs
    for i in range(config.layers):
        if config.dropout:
            h = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(h)
        sequences = i < config.layers - 1 or config.pooling != "last"
        rnn = recurrent_layer(config.cell, config.units, return_sequences=sequences, name=f"rnn_{i}")
        if config.bidirectional:
            rnn = keras.layers.Bidirectional(rnn, name=f"bidirectional_{i}")
        h = rnn(h)  # (B, T, H) or, last layer with pooling "last", (B, H); 2H when bidirectional
    if config.pooling != "last":
        h = SequencePooling(config.pooling, name="pooling")(h)  # (B, H)
    if config.dropout:
        h = keras.layers.Dropout(config.dropout, name=f"dropout_{config.layers}")(h)
    if is_regression(config):
        outputs = keras.layers.Dense(1, dtype="float32", name="value")(h)  # (B, 1), linear; float32 under a mixed policy
    else:
        k = outputs_per_example(config)
        outputs = keras.layers.Dense(k * n_labels, dtype="float32", name="logits")(h)  # (B, K * C); float32 too
        if k > 1:
            outputs = keras.layers.Reshape((k, n_labels), name="per_symbol")(outputs)  # (B, K, C)
    return training.SeqModel(inputs, outputs, clip_norm=config.clip_norm, name="classifier")


def compile_model(model, config):
    if is_regression(config):
        loss, scores = keras.losses.MeanSquaredError(), []
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        scores = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=training.OPTIMIZERS[config.optimizer](config.lr), loss=loss, metrics=scores)
    return model


def model_outputs(model, x, batch_size):
    """The model's raw outputs (logits, or values) for every row of ``x``, in order."""
    return model.predict(eval_batches(x, [], batch_size), verbose=0)


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def score(model, config, x, y, labels, batch_size):
    """Scores of ``model`` on ``(x, y)``: classification or regression (see ``seqkit.metrics``)."""
    outputs = model_outputs(model, x, batch_size)
    if is_regression(config):
        return metrics.regression_scores(y, outputs)
    predicted = outputs.argmax(axis=-1)  # (N,) or, copy, (N, K)
    scores = metrics.classification_scores(y, predicted, labels)
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


# -- training -----------------------------------------------------------------


def train(config, resume=False, verbose="auto", given=None, callbacks=()):
    """Train a classifier (or a synthetic task) and write its run directory (see ``seqkit.training.rundir``).

    ``resume`` and ``given``: as ``seqkit.tasks.char_lm.train``; ``callbacks``: more Keras
    callbacks (as ``seqkit.tasks.seq2seq.train``).

    Returns a dict with the run directory, the number of steps, the last
    epoch's logs (loss, accuracy, val_loss, ...) and ``val_scores``, the
    final model's scores on the validation split (see ``seqkit.metrics``;
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


# -- a trained model ----------------------------------------------------------


def read_labels(run_dir):
    return read_run_json(Path(run_dir) / rundir.LABELS, "labels file", lambda data: list(data["labels"]))


def run_paths(path):
    """``(run_dir, weights)`` of a run directory, or of a ``.keras`` file inside one."""
    run_dir = rundir.run_dir_of(path)
    return run_dir, (Path(path) if Path(path).suffix == ".keras" else run_dir / rundir.MODEL)


def load(path):
    """(config, vocab, labels, model) of a trained classifier: a run directory,
    or a ``.keras`` file inside one (e.g. a checkpoint). ``vocab`` is None for
    numeric inputs. The model carries the padding mask."""
    run_dir, weights = run_paths(path)
    config = rundir.read_config(run_dir, ClassifyConfig, TASK)
    labels = read_labels(run_dir)
    vocab = Vocabulary.load(run_dir / rundir.VOCAB) if config.inputs == "text" else None
    model = build_model(config, len(vocab) if vocab is not None else 0, len(labels))
    return config, vocab, labels, load_weights(model, weights)


def evaluate(path, data=None, fmt="auto", text_column=None, label_column=None, batch_size=None):
    """Scores of a trained model on labelled held-out data (see ``seqkit.metrics``).

    ``data`` is a labelled file; for a synthetic task it may be None: a fresh
    test set of ``TEST_SIZE`` examples from the run's seed (a stream the
    training set was not drawn from). Writes ``eval/NAME.json`` and, for
    classification, ``eval/NAME-confusion.png`` into the run directory (NAME:
    the data file's stem, or ``test``); their paths are in ``files``. Text
    tokens the vocabulary lacks count as the unknown symbol (``unknown_tokens``).
    """
    config, vocab, labels, model = load(path)
    unknown = 0
    check_writable(run_paths(path)[0] / EVAL_DIR, "make the run directory writable, or evaluate a copy of it")
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
        raise SeqkitError("nothing to evaluate on: pass --data FILE, labelled examples held out from training")
    scores = score(model, config, x, y, labels, batch_size or config.batch_size)
    if config.inputs == "text":
        scores["unknown_tokens"] = unknown
    return {**scores, "files": write_scores(run_paths(path)[0], name, scores)}


def as_examples(inputs, config):
    """In-memory inputs (texts, or arrays ``(T,)`` / ``(T, D)``) as ``Examples``."""
    if config.inputs == "text":
        x = [str(text) for text in inputs]
        for i, text in enumerate(x):
            if not text.strip():
                raise SeqkitError(f"input {i + 1} is empty; pass non-empty texts")
    else:
        x = [steps_array(np.asarray(s, dtype=np.float64).tolist(), f"input {i + 1}", "values")
             for i, s in enumerate(inputs)]
    if not x:
        raise SeqkitError("no inputs to predict; pass at least one")
    return Examples(config.inputs, x, None, "the inputs")


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
        check_count(batch_size, "--batch-size")
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
    ``read_lines`` reads them, e.g. ``sequences.stdin_lines()``), yielded in
    order, ``batch_size`` lines at a time as they are read: memory does not grow
    with the input, so an endless pipe is served as it flows. ``name`` names the
    source in error messages (with the line number)."""
    if batch_size is not None:
        check_count(batch_size, "--batch-size")
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
