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

import numpy as np
import tensorflow as tf

from seqkit import training
from seqkit.config import TASK_CHAR_LM as TASK
from seqkit.config import CharLMConfig, check_count, check_seed
from seqkit.decoding import Sampler, check_sampler
from seqkit.errors import SeqkitError, SeqkitWarning
from seqkit.io import check_data_exists
from seqkit.plots import plot_history
from seqkit.tasks.char_lm.data import (
    as_tensor,
    build_vocabulary,
    eval_batches,
    load_text,
    load_vocabulary,
    split_ids,
    stripe_batches,
    window_batches,
)
from seqkit.tasks.char_lm.model import LN2, LMMetrics, ResetStates, StatefulValidation, build_model, compile_model
from seqkit.text.corpus import read_corpus
from seqkit.text.vocab import describe_chars
from seqkit.training import rundir
from seqkit.training.checkpoint import load_weights
from seqkit.training.distribute import get_strategy


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
        vocab = load_vocabulary(source)
        if not resume and (missing := vocab.unknown(text)):
            warnings.warn(f"{len(missing)} characters of the data are not in the `init_from` run's vocabulary "
                          f"and are read as the unknown symbol: {describe_chars(missing[:10])}", SeqkitWarning,
                          stacklevel=2)
        ids = vocab.encode(text, unknown="map")
    else:
        vocab = build_vocabulary(text)
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


def load(path):
    """(config, vocab, model) of a trained char-LM: a run directory, or a
    ``.keras`` file inside one (e.g. a checkpoint)."""
    run_dir, weights = rundir.run_paths(path)
    config = rundir.read_config(run_dir, CharLMConfig, TASK)
    vocab = load_vocabulary(run_dir)
    return config, vocab, load_weights(build_model(config, len(vocab)), weights)


def vocabulary(path):
    """The Vocabulary of the run at ``path`` (a run directory or a ``.keras`` file inside one)."""
    return load_vocabulary(rundir.run_dir_of(path))


def evaluate(path, data, errors="strict", batch_size=None):
    """Loss (nats/char), bits per character and perplexity of a trained model on held-out text.

    Characters the vocabulary lacks are scored as the unknown symbol; their
    count is reported.
    """
    check_data_exists(data)
    config, vocab, model = load(path)
    text = read_corpus(data, errors=errors)
    unknown = len([c for c in text if c not in vocab.index])  # (U+FFFD itself is the unknown symbol's id)
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


MAX_NUM_SAMPLES = 10_000  # samples are drawn as one batch


MAX_GENERATED = 10**8  # characters held in memory: --num-samples x --length


def check_sampling(length, temperature, top_k, top_p, num_samples, seed=None):
    check_count(length, "`length`")
    check_sampler(temperature, top_k, top_p)
    check_count(num_samples, "`num_samples`", MAX_NUM_SAMPLES, " (the samples are drawn as one batch)")
    if num_samples * length > MAX_GENERATED:
        raise SeqkitError(f"`num_samples` x `length` = {num_samples:,} x {length:,} characters exceeds the "
                          f"{MAX_GENERATED:,} held in memory; ask for fewer or shorter samples")
    check_seed(seed, unset=None)


def default_prime(vocab):
    """The prime when none is given, valid for every model: a newline when the
    training text had one (char-rnn's habit), else a space, else its first character."""
    for c in ("\n", " "):
        if c in vocab.index:
            return c
    return vocab.symbols[1] if len(vocab) > 1 else vocab.symbols[0]


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
        raise SeqkitError("`prime` must not be empty; give at least one character to start from")
    _, vocab, model = load(path)
    prime_ids = vocab.encode(default_prime(vocab) if prime is None else prime, what="`prime`")
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
            on_text("".join(vocab.decode(pieces[-1][0])))
        done += n
    ids = np.concatenate(pieces, axis=1)
    return ["".join(vocab.decode(row)) for row in ids]
