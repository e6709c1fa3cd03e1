"""Next-character language model: the char-rnn experience in Keras.

Python API (the CLI only calls these):

    config = CharLMConfig(data=["input.txt"], units=256, layers=2, seed=0, out="runs/shakespeare")
    summary = train(config)                        # writes the run directory
    texts = generate("runs/shakespeare", prime="ROMEO:", length=500, temperature=0.8)
    scores = evaluate("runs/shakespeare", ["held_out.txt"])   # loss, bpc, perplexity
"""

import math
import random
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqkit import training
from seqkit.config import TASK_CHAR_LM as TASK
from seqkit.config import CharLMConfig, check_count, check_seed
from seqkit.decoding import Sampler, check_sampler
from seqkit.errors import SeqkitError, SeqkitWarning
from seqkit.layers import recurrent_layer
from seqkit.losses import SequenceCrossentropy
from seqkit.plots import plot_history
from seqkit.text.corpus import default_corpus, read_corpus
from seqkit.text.vocab import Vocabulary, describe_chars
from seqkit.training import rundir
from seqkit.training.checkpoint import load_weights
from seqkit.training.distribute import get_strategy

LN2 = math.log(2.0)


# -- data ---------------------------------------------------------------------


def load_text(config):
    if config.data:
        return read_corpus(config.data, config.glob, config.errors)
    return default_corpus(config.max_chars)


def split_ids(ids, config):
    """Train / val ids: the last ``val_fraction`` of the text is held out (char-rnn's split)."""
    n_val = int(len(ids) * config.val_fraction)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    window = config.seq_len + 1
    if len(train) < window * config.batch_size:
        raise SeqkitError(
            f"the training text has {len(train):,} characters, fewer than one batch of "
            f"{config.batch_size} windows of {window} (--seq-len + 1); add text, or lower "
            "--batch-size or --seq-len"
        )
    if config.val_fraction > 0 and len(val) < window:
        raise SeqkitError(
            f"the validation text has {len(val):,} characters, fewer than one window of {window}; "
            "raise --val-fraction, lower --seq-len, or set --val-fraction 0"
        )
    return train, val


def as_tensor(ids, vocab_size):
    """One copy of the corpus in memory: uint8 ids when they fit, else int32."""
    dtype = np.uint8 if vocab_size <= 256 else np.int32
    return tf.constant(np.asarray(ids, dtype=dtype))


def windows_at(ids, starts, seq_len):
    """Windows of ``T + 1`` characters from ``starts`` ``(B,)``: ``x, y`` of ``(B, T)``, ``y`` shifted by one."""
    windows = tf.cast(tf.gather(ids, starts[:, None] + tf.range(seq_len + 1, dtype=tf.int64)), tf.int32)
    return windows[:, :-1], windows[:, 1:]


def window_batches(ids, seq_len, batch_size, seed, shuffle=True):
    """Endless batches ``(x, y)`` of shape ``(B, T)``: non-overlapping windows of
    ``T + 1`` characters (``y`` is ``x`` shifted by one), streamed from one copy
    of the text.

    With ``shuffle`` the windows of data epoch ``e`` are permuted by a
    stateless shuffle seeded with ``(seed, e)``, so batch ``k`` of the stream
    is the same in every run with that seed: resuming skips exactly the
    batches already seen. Without ``shuffle`` the windows come in text order.
    """
    n_windows = (int(ids.shape[0]) - 1) // seq_len
    starts = tf.range(n_windows, dtype=tf.int64) * seq_len
    return training.shuffled_batches(starts, batch_size, seed, lambda s: windows_at(ids, s, seq_len), shuffle)


def stripe_batches(ids, seq_len, batch_size):
    """Endless batches for stateful truncated BPTT (char-rnn): the text is cut
    into ``B`` contiguous stripes and batch ``k`` holds window ``k`` of every
    stripe, so row ``b`` of consecutive batches continues the same text."""
    stripe = int(ids.shape[0]) // batch_size
    n_batches = (stripe - 1) // seq_len
    stripes = tf.reshape(ids[: stripe * batch_size], (batch_size, stripe))  # (B, L)

    def to_windows(step):
        start = (step % n_batches) * seq_len
        windows = tf.cast(stripes[:, start : start + seq_len + 1], tf.int32)  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]

    return tf.data.Dataset.range(2**62).map(to_windows).prefetch(tf.data.AUTOTUNE), n_batches


def eval_batches(ids, seq_len, batch_size):
    """All windows of ``ids`` once, in order (validation and evaluate)."""
    starts = tf.range((int(ids.shape[0]) - 1) // seq_len, dtype=tf.int64) * seq_len
    return tf.data.Dataset.from_tensor_slices(starts).batch(batch_size).map(lambda s: windows_at(ids, s, seq_len))


# -- model --------------------------------------------------------------------


def build_model(config, vocab_size, stateful=False):
    """Embedding -> ``layers`` x recurrent layer -> Dense logits, as a SeqModel."""
    batch = config.batch_size if stateful else None
    inputs = keras.Input(batch_shape=(batch, None), dtype="int32", name="chars")
    h = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(inputs)  # (B, T, E)
    for i in range(config.layers):
        if config.dropout:
            h = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(h)
        h = recurrent_layer(config.cell, config.units, return_sequences=True, stateful=stateful, name=f"rnn_{i}")(h)
    if config.dropout:
        h = keras.layers.Dropout(config.dropout, name=f"dropout_{config.layers}")(h)
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(h)  # (B, T, V); float32 under a mixed policy
    return training.SeqModel(inputs, logits, clip_norm=config.clip_norm, name="char_lm")


def compile_model(model, config):
    model.compile(optimizer=training.OPTIMIZERS[config.optimizer](config.lr), loss=SequenceCrossentropy())
    return model


# -- training -----------------------------------------------------------------


class LMMetrics(keras.callbacks.Callback):
    """Adds bits per character and perplexity to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if "loss" in logs:
            logs["bpc"] = logs["loss"] / LN2
        if "val_loss" in logs:
            logs["val_bpc"] = logs["val_loss"] / LN2
            logs["val_perplexity"] = math.exp(min(logs["val_loss"], 700.0))


class StatefulValidation(keras.callbacks.Callback):
    """Validation for a stateful model: a stateless twin with the same weights
    scores the validation text, so the training state is left alone."""

    def __init__(self, twin, batches):
        super().__init__()
        self.twin, self.batches = twin, batches

    def on_epoch_end(self, epoch, logs=None):
        self.twin.set_weights(self.model.get_weights())
        logs["val_loss"] = self.twin.evaluate(self.batches, verbose=0)


class ResetStates(keras.callbacks.Callback):
    """Zero the recurrent state at the start of every pass over the text."""

    def __init__(self, batches_per_pass, global_step):
        super().__init__()
        self.batches_per_pass, self.step = batches_per_pass, global_step

    def on_train_batch_begin(self, batch, logs=None):
        if self.step % self.batches_per_pass == 0:
            for layer in self.model.layers:
                if getattr(layer, "stateful", False):
                    layer.reset_state()
        self.step += 1


def train(config, resume=False, verbose="auto", given=None):
    """Train a char-LM and write its run directory (see ``seqkit.training.rundir``).

    ``resume`` continues the run in ``config.out`` from its newest intact
    checkpoint; ``given`` names the fields the caller set (see
    ``seqkit.training.rundir.resolve_config``: only epochs, steps, lr, ... may change).

    Returns a dict with the run directory, the number of steps, and the
    last epoch's train/val loss, val bits per character and perplexity
    (a resumed run that had already finished: ``complete`` True, nothing done).
    """
    config = rundir.resolve_config(config, resume, given)
    strategy = get_strategy(config.strategy)  # before anything is written: TF_CONFIG errors leave no files
    with rundir.run_directory(config.out, resume) as out:
        return train_in(out, config, resume, strategy, verbose)


def train_in(out, config, resume, strategy, verbose):
    """``train`` inside the run directory ``out``, held (locked) by the caller."""
    text = load_text(config)
    if source := rundir.vocabulary_dir(out, config, resume):  # characters new to it read as <unk>
        vocab = Vocabulary.load(source / rundir.VOCAB)
        if not resume and (missing := vocab.unknown(text)):
            warnings.warn(f"{len(missing)} characters of the data are not in the --init-from run's vocabulary "
                          f"and are read as the unknown symbol: {describe_chars(missing[:10])}", SeqkitWarning,
                          stacklevel=2)
        ids = vocab.encode(text, unknown="map")
    else:
        vocab = Vocabulary.from_text(text)
        ids = vocab.encode(text)
    train_ids, val_ids = split_ids(ids, config)
    train_ids, val_ids = as_tensor(train_ids, len(vocab)), as_tensor(val_ids, len(vocab))
    if config.stateful:
        batches, per_pass = stripe_batches(train_ids, config.seq_len, config.batch_size)
    else:
        batches, per_pass = window_batches(train_ids, config.seq_len, config.batch_size, config.seed)
    epochs, steps_per_epoch, start, complete = training.plan_run(out, config, per_pass, resume)
    if complete:
        return complete
    if not resume:
        vocab.save(out / rundir.VOCAB)
    rundir.save_config(out, config, start["global_step"] if start else None)

    training.seed_everything(config.seed)
    with strategy.scope(), training.dtype_policy(config.dtype_policy):
        model = compile_model(build_model(config, len(vocab), stateful=config.stateful), config)
    global_step = start["global_step"] if start else 0
    callbacks, fit_kwargs = [], {}
    if config.val_fraction > 0:
        val = eval_batches(val_ids, config.seq_len, config.batch_size)
        if config.stateful:
            with training.dtype_policy(config.dtype_policy):
                twin = compile_model(build_model(config, len(vocab)), config)
            callbacks.append(StatefulValidation(twin, val))
        else:
            fit_kwargs["validation_data"] = val
    if config.stateful:
        callbacks.append(ResetStates(per_pass, global_step))
    callbacks.append(LMMetrics())
    last = training.train_run(model, batches, out, epochs, steps_per_epoch, start, callbacks, verbose,
                              **training.run_limits(config), **fit_kwargs)
    plot_history(out, training.read_metrics(out), ylabel="cross-entropy (nats/char)", title="char-LM loss")
    return {"run_dir": str(out), "steps": epochs * steps_per_epoch, **last}


# -- loading a trained model --------------------------------------------------


def load(path):
    """(config, vocab, model) of a trained char-LM: a run directory, or a
    ``.keras`` file inside one (e.g. a checkpoint)."""
    path = Path(path)
    if path.suffix == ".keras":
        weights = path
        run_dir = path.parent.parent if path.parent.name == rundir.CHECKPOINTS else path.parent
    else:
        run_dir, weights = path, path / rundir.MODEL
    config = rundir.read_config(run_dir, CharLMConfig, TASK)
    vocab = Vocabulary.load(run_dir / rundir.VOCAB)
    return config, vocab, load_weights(build_model(config, len(vocab)), weights)


def vocabulary(path):
    """The Vocabulary of the run at ``path`` (a run directory or a ``.keras`` file inside one)."""
    return Vocabulary.load(rundir.run_dir_of(path) / rundir.VOCAB)


def evaluate(path, data, errors="strict", batch_size=None):
    """Loss (nats/char), bits per character and perplexity of a trained model on held-out text.

    Characters the vocabulary lacks are scored as the unknown symbol; their
    count is reported.
    """
    config, vocab, model = load(path)
    text = read_corpus(data, errors=errors)
    unknown = sum(1 for c in text if c not in vocab.index)
    ids = vocab.encode(text, unknown="map")
    if len(ids) < config.seq_len + 1:
        raise SeqkitError(
            f"the evaluation text has {len(ids)} characters, fewer than one window of {config.seq_len + 1}; "
            "pass more text"
        )
    compile_model(model, config)
    loss = model.evaluate(eval_batches(as_tensor(ids, len(vocab)), config.seq_len, batch_size or config.batch_size),
                          verbose=0)
    n_windows = (len(ids) - 1) // config.seq_len
    return {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(loss), "chars": n_windows * config.seq_len,
            "unknown_chars": unknown}


# -- generation ---------------------------------------------------------------


MAX_NUM_SAMPLES = 10_000  # samples are drawn as one batch
MAX_GENERATED = 10**8  # characters held in memory: --num-samples x --length


def check_sampling(length, temperature, top_k, top_p, num_samples, seed=None):
    check_count(length, "--length")
    check_sampler(temperature, top_k, top_p)
    check_count(num_samples, "--num-samples", MAX_NUM_SAMPLES, " (the samples are drawn as one batch)")
    if num_samples * length > MAX_GENERATED:
        raise SeqkitError(f"--num-samples x --length = {num_samples:,} x {length:,} characters exceeds the "
                          f"{MAX_GENERATED:,} held in memory; ask for fewer or shorter samples")
    check_seed(seed, unset=None)


def default_prime(vocab):
    """The prime when none is given, valid for every model: a newline when the
    training text had one (char-rnn's habit), else a space, else its first character."""
    for c in ("\n", " "):
        if c in vocab.index:
            return c
    return vocab.chars[1] if len(vocab) > 1 else vocab.chars[0]


def generate(path, prime=None, length=500, temperature=0.8, top_k=0, top_p=1.0, seed=None, num_samples=1,
             on_text=None, chunk=64, xla=False):
    """Sample ``num_samples`` continuations of ``prime``, each ``length`` characters.

    Args:
        path: Run directory or ``.keras`` file (see ``load``).
        prime: Text that warms the state; every character must be in the
            vocabulary. None: ``default_prime`` (a newline if the model knows one).
        temperature: Softmax temperature; 0 picks the argmax (deterministic).
        top_k, top_p: Restrict sampling to the k most likely characters / the
            smallest set with probability >= top_p (0 and 1 disable them).
        seed: Makes sampling reproducible, in [0, 2**32 - 1]; None draws a random seed.
        num_samples: Samples, drawn as one batch (at most ``MAX_NUM_SAMPLES``;
            ``num_samples * length`` at most ``MAX_GENERATED``).
        on_text: Called with each chunk of text of sample 0 as it is produced
            (streaming), e.g. ``print(end="")``.
        chunk: Characters per call of the in-graph sampling loop.
        xla: Compile the loop with XLA (about 1 s once, then about twice as
            fast): for long texts. Every call then samples a whole chunk.

    Returns:
        The generated texts (without the prime).
    """
    check_sampling(length, temperature, top_k, top_p, num_samples, seed)
    if prime is not None and not prime:
        raise SeqkitError("--prime must not be empty; give at least one character to start from")
    _, vocab, model = load(path)
    prime_ids = vocab.encode(default_prime(vocab) if prime is None else prime, what="--prime")
    top_k = min(int(top_k), len(vocab))  # k >= V keeps every character
    sampler = Sampler(model, xla=xla)
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    ids = tf.constant([prime_ids] * num_samples, tf.int32)  # (B, P)
    logits, states = sampler.warm(ids, sampler.initial_states(num_samples))
    pieces, done = [], 0
    while done < length:
        n = min(chunk, length - done)
        out, logits, states = sampler.sample(  # under XLA always a whole chunk: one compilation
            logits, states, tf.constant(chunk if xla else n), tf.constant(float(temperature)),
            tf.constant(int(top_k)), tf.constant(float(top_p)), tf.constant(seed, tf.int64),
            tf.constant(done, tf.int64),
        )
        pieces.append(out.numpy()[:, :n])
        if on_text is not None:
            on_text(vocab.decode(pieces[-1][0]))
        done += n
    ids = np.concatenate(pieces, axis=1)
    return [vocab.decode(row) for row in ids]
