r"""Autoregressive decoding loops: greedy, sampling and beam search, each one ``tf.while_loop``.

Every loop is written against a ``step`` function

    ``step(tokens, states) -> (logits, states)``: ``tokens`` ``(N,)`` int32,
    ``logits`` ``(N, V)``, ``states`` any nest of tensors ``(N, ...)``,

so it knows nothing of the model: the recurrent state is carried from step
to step and each step runs the model once on the previous token. All
arguments are tensors (``max_length``, ``beam_width``, ...), so a loop traces
once into a graph that a SavedModel signature can hold.

Conventions, shared by the three:

* decoding starts from ``start_id``; a hypothesis ends when it emits
  ``end_id``, or is cut after ``max_length`` steps (``</s>`` counts as a step);
* the ids in ``blocked`` (padding, the start symbol) are never emitted;
* outputs: ``ids`` without ``</s>``, padded with ``pad_id`` to the longest
  output; ``lengths`` (tokens before ``</s>``); ``log_probs``, the model's
  log-probability of the hypothesis (``</s>`` included when it ended), from
  the softmax over the ids that may be emitted.

Beam search keeps the ``K`` best live hypotheses by log-probability. At each
step the ``K`` best of all ``K x V`` continuations are taken; those ending
with ``</s>`` move to the finished set, scored with length normalization

.. math::

    \operatorname{score}(y) = \log p(y) / n^{\alpha}

(``n`` steps, ``</s>`` included; ``α = length_penalty``; ``α = 0``: the raw
log-probability, ``α = 1``: the mean per step), and the ``K`` best
continuations that do not end stay live. The finished set keeps its ``K``
best. The search stops at ``max_length`` or once no live hypothesis can beat
the ``K``-th finished one: with ``α >= 0`` a live hypothesis's final score is
at most ``log p / max_length^α``. With ``K = 1`` and ``α = 0`` this is
greedy decoding; with ``K`` at least the number of hypotheses it is exact.
"""

import numbers

import numpy as np
import tensorflow as tf

from seqkit.errors import SeqkitError


def block(logits, blocked):
    """``logits`` ``(N, V)`` with the ids in ``blocked`` set to -inf."""
    ids = tf.range(tf.shape(logits)[-1])
    banned = tf.reduce_any(tf.equal(ids[None, :], tf.constant(list(blocked), tf.int32)[:, None]), axis=0)  # (V,)
    return tf.where(banned[None, :], tf.constant(float("-inf"), logits.dtype), logits)


def same_shapes(new, old):
    """``new`` loop variables with the static shapes of ``old``: the loop's
    shapes do not change, but ops such as ``top_k`` with a tensor ``k`` lose them."""
    return tf.nest.map_structure(lambda n, o: tf.ensure_shape(n, o.shape) if isinstance(n, tf.Tensor) else n, new, old)


def finish(ids, lengths, pad_id, end_id):
    """``ids`` (time last) with ``</s>`` replaced by padding, cut to the longest output."""
    ids = tf.where(tf.equal(ids, end_id), pad_id, ids)
    return ids[..., : tf.reduce_max(tf.concat([tf.reshape(lengths, [-1]), [0]], axis=0))]


def search(step, states, batch, max_length, choose, *, start_id, end_id, pad_id, blocked):
    """Greedy decoding or sampling: ``choose(logits, t) -> ids`` ``(B,)`` picks each step's token.

    Returns a dict: ``ids`` ``(B, T)``, ``lengths`` ``(B,)``, ``log_probs`` ``(B,)``.
    Stops when every row has emitted ``</s>``, or after ``max_length`` steps.
    """

    def body(t, tokens, states_in, finished_in, lengths_in, log_probs_in, out):
        logits, states = step(tokens, states_in)  # (B, V)
        logits = block(logits, blocked)
        token = tf.where(finished_in, pad_id, choose(logits, t))  # finished rows emit padding
        logp = tf.gather(tf.nn.log_softmax(logits), token, batch_dims=1)  # log p(y_t | y_<t, x): (B,)
        log_probs = log_probs_in + tf.where(finished_in, tf.zeros_like(logp), logp)
        lengths = lengths_in + tf.cast(tf.logical_not(finished_in) & tf.not_equal(token, end_id), tf.int32)
        finished = finished_in | tf.equal(token, end_id)
        new = (t + 1, token, states, finished, lengths, log_probs, out.write(t, token))
        return same_shapes(new, (t, tokens, states_in, finished_in, lengths_in, log_probs_in, out))

    def more(t, tokens, states, finished, *_):
        return (t < max_length) & tf.logical_not(tf.reduce_all(finished))

    start = (
        tf.constant(0),
        tf.fill([batch], tf.constant(start_id, tf.int32)),
        states,
        tf.zeros([batch], tf.bool),
        tf.zeros([batch], tf.int32),
        tf.zeros([batch], tf.float32),
        tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None])),
    )
    _, _, _, _, lengths, log_probs, out = tf.while_loop(more, body, start)
    ids = tf.transpose(out.stack())  # (B, steps)
    return {"ids": finish(ids, lengths, pad_id, end_id), "lengths": lengths, "log_probs": log_probs}


def tile_beams(x, beam_width):
    """``(B, ...) -> (B * K, ...)``: each row repeated ``K`` times, beams of a row adjacent."""
    return tf.repeat(x, beam_width, axis=0)


def gather_beams(x, beams, batch, beam_width):
    """Rows of ``x`` ``(B * K, ...)`` reordered by ``beams`` ``(B, K)`` (indices within each row's beams)."""
    rest = tf.shape(x)[1:]
    grouped = tf.reshape(x, tf.concat([[batch, beam_width], rest], axis=0))  # (B, K, ...)
    return tf.reshape(tf.gather(grouped, beams, batch_dims=1), tf.concat([[batch * beam_width], rest], axis=0))


def beam_search(step, states, batch, max_length, beam_width, length_penalty, *, start_id, end_id, pad_id, blocked):
    """Beam search (see the module docstring). ``states`` are per source ``(B, ...)``;
    ``step`` must expect ``B * K`` rows (tile what it closes over with ``tile_beams``).

    Returns a dict, hypotheses best first: ``ids`` ``(B, K, T)``, ``lengths``
    ``(B, K)``, ``scores`` ``(B, K)`` (length-normalized), ``log_probs`` ``(B, K)``.
    A row with fewer than ``K`` possible hypotheses fills the rest with score -inf.
    """
    k = beam_width
    neg_inf = tf.constant(float("-inf"))
    alpha = tf.cast(length_penalty, tf.float32)
    max_steps = tf.cast(max_length, tf.float32)
    states = tf.nest.map_structure(lambda s: tile_beams(s, k), states)

    def keep_best(scores, *fields):
        """The ``K`` best of ``scores`` ``(B, M)`` and the matching entries of ``fields`` ``(B, M, ...)``."""
        top = tf.math.top_k(scores, k)
        return (top.values, *(tf.gather(f, top.indices, batch_dims=1) for f in fields))

    def body(*loop_vars):
        t, tokens, states, alive_logp, alive_ids, done = loop_vars
        logits, states = step(tokens, states)  # (B * K, V)
        logp = tf.nn.log_softmax(block(logits, blocked))
        vocab = tf.shape(logp)[-1]
        candidates = alive_logp[:, :, None] + tf.reshape(logp, [batch, k, vocab])  # log p(y_<t, y_t): (B, K, V)
        flat = tf.reshape(candidates, [batch, k * vocab])
        n_steps = tf.cast(t + 1, tf.float32)

        # 1. Candidates among the K best that end with </s> are finished hypotheses.
        top = tf.math.top_k(flat, k)
        ended = tf.equal(top.indices % vocab, end_id) & (top.values > neg_inf)
        ended_ids = tf.gather(alive_ids, top.indices // vocab, batch_dims=1)  # (B, K, L)
        ended_score = tf.where(ended, top.values / n_steps**alpha, neg_inf)
        ended_logp = tf.where(ended, top.values, neg_inf)
        ended_length = tf.fill([batch, k], t)

        # 2. The K best continuations that do not end stay live.
        is_end = tf.equal(tf.range(vocab), end_id)[None, None, :]
        live = tf.math.top_k(tf.reshape(tf.where(is_end, neg_inf, candidates), [batch, k * vocab]), k)
        beams, token = live.indices // vocab, live.indices % vocab  # (B, K) each
        at_t = tf.equal(tf.range(max_length), t)[None, None, :]  # position t of the ids: (1, 1, L)
        alive_ids = tf.where(at_t, token[:, :, None], tf.gather(alive_ids, beams, batch_dims=1))
        alive_logp = live.values
        states = tf.nest.map_structure(lambda s: gather_beams(s, beams, batch, k), states)

        # 3. After max_length steps the live hypotheses are cut and finish too.
        last = t + 1 >= max_length
        cut_score = tf.where(last, alive_logp / max_steps**alpha, neg_inf)
        cut_logp = tf.where(last, alive_logp, neg_inf)

        # 4. The finished set keeps its K best (old ones first: they win ties).
        done = keep_best(
            tf.concat([done[0], ended_score, cut_score], axis=1),
            tf.concat([done[1], ended_logp, cut_logp], axis=1),
            tf.concat([done[2], ended_ids, alive_ids], axis=1),
            tf.concat([done[3], ended_length, tf.fill([batch, k], t + 1)], axis=1),
        )
        return same_shapes((t + 1, tf.reshape(token, [-1]), states, alive_logp, alive_ids, done), loop_vars)

    def more(t, tokens, states, alive_logp, alive_ids, done):
        worst_done = done[0][:, -1]  # (B,)
        best_possible = tf.reduce_max(alive_logp, axis=1) / max_steps**alpha
        settled = (worst_done > neg_inf) & (worst_done >= best_possible)
        return (t < max_length) & tf.logical_not(tf.reduce_all(settled))

    first = tf.where(tf.range(k) == 0, 0.0, neg_inf)  # one live hypothesis at the start, not K copies
    start = (
        tf.constant(0),
        tf.fill([batch * k], tf.constant(start_id, tf.int32)),
        states,
        tf.tile(first[None, :], [batch, 1]),
        tf.fill([batch, k, max_length], pad_id),
        (tf.fill([batch, k], neg_inf), tf.fill([batch, k], neg_inf), tf.fill([batch, k, max_length], pad_id),
         tf.zeros([batch, k], tf.int32)),
    )
    _, _, _, _, _, (scores, log_probs, ids, lengths) = tf.while_loop(more, body, start)
    return {"ids": finish(ids, lengths, pad_id, end_id), "lengths": lengths, "scores": scores,
            "log_probs": log_probs}


# -- sampling: one token from logits, and the char-LM's sampling loop ----------------------


def filter_logits(logits, top_k, top_p):
    """Keep the ``top_k`` largest logits (0: all) and the smallest set whose
    probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020;
    1: all); the rest become -inf. ``logits``: ``(B, V)``. One sort serves
    both (``tf.math.top_k`` would need a constant k to compile with XLA)."""
    vocab = tf.shape(logits)[-1]
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    sorted_logits = tf.sort(logits, direction="DESCENDING", axis=-1)  # (B, V)
    kth = tf.gather(sorted_logits, [k - 1], axis=1)  # (B, 1): the k-th largest
    logits = tf.where(logits < kth, -np.inf, logits)
    sorted_logits = tf.where(sorted_logits < kth, -np.inf, sorted_logits)  # still sorted
    before = tf.math.cumsum(tf.nn.softmax(sorted_logits), axis=-1, exclusive=True)  # mass of the larger ones
    kept = tf.where(before < top_p, sorted_logits, np.inf)  # the first is always kept
    cutoff = tf.reduce_min(kept, axis=-1, keepdims=True)  # smallest kept logit
    return tf.where(logits < cutoff, -np.inf, logits)


def choose(logits, temperature, top_k, top_p, seed):
    """Next ids ``(B,)``: argmax when ``temperature == 0``, else a sample from
    ``softmax(filter(logits) / temperature)`` with a stateless seed, by the
    Gumbel-max trick: ``argmax(z - log(-log(u)))``, ``u ~ U(0, 1)``, is
    distributed as ``softmax(z)`` (and, unlike ``stateless_categorical``,
    compiles with XLA)."""
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = logits / tf.maximum(temperature, 1e-6)
    scaled = tf.cond((top_k > 0) | (top_p < 1), lambda: filter_logits(scaled, top_k, top_p), lambda: scaled)
    u = tf.random.stateless_uniform(tf.shape(scaled), seed=seed, minval=np.finfo(np.float32).tiny, maxval=1.0)
    sampled = tf.argmax(scaled - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)
    return tf.where(temperature > 0, sampled, greedy)


class Sampler(tf.Module):
    """Autoregressive sampling with the recurrent state carried step to step.

    The prime warms the state in one pass of each layer; then each step runs
    every cell once on the previous character (never re-running the prefix),
    inside one ``tf.function`` ``while`` loop per chunk of characters.
    """

    def __init__(self, model, xla=False):
        super().__init__()
        self.embedding = model.get_layer("embedding")
        self.rnns = [layer for layer in model.layers if layer.name.startswith("rnn_")]
        self.logits = model.get_layer("logits")
        # XLA compiles the loop once per (batch, n): about 1 s, then about three times
        # the speed at batch 1 on CPU (docs/benchmarks.md). Same distribution; a seed's
        # text may differ.
        self.sample = tf.function(self.sample_loop, jit_compile=xla, reduce_retracing=True)

    def initial_states(self, batch):
        return [layer.cell.get_initial_state(batch_size=batch) for layer in self.rnns]

    @tf.function(reduce_retracing=True)
    def warm(self, ids, states, mask=None):
        """Run the prime ``ids`` ``(B, P)``: logits for the next character ``(B, V)`` and the states.

        ``mask`` ``(B, P)`` marks the characters of right-padded primes of
        different lengths: the state stops at each row's last character.
        """
        h = self.embedding(ids)  # (B, P, E)
        new_states = []
        for layer, s in zip(self.rnns, states):
            last, h, s = layer.inner_loop(h, list(s), mask=mask, training=False)  # h: (B, P, H)
            new_states.append(list(s))
        return self.logits(last), new_states

    def input_table(self):
        """The first layer's input projection ``x W + b`` of every character's
        embedding, ``(V, gates * units)``: computed once per call of ``sample``,
        it turns each step's ``(1, E) @ (E, gates * units)`` matmul into a row lookup."""
        return self.rnns[0].cell.project_inputs(self.embedding.embeddings)

    def step(self, token, states, table):
        """One character ``(B,)`` in: next logits ``(B, V)`` and the new states."""
        new_states = []
        for n, (layer, s) in enumerate(zip(self.rnns, states)):
            xw = tf.gather(table, token) if n == 0 else layer.cell.project_inputs(h)  # x_t W + b
            h, s = layer.cell.step(xw, s)  # h_t from x_t and the state: one step of the cell
            new_states.append(list(s))
        return self.logits(h), new_states

    def sample_loop(self, logits, states, n, temperature, top_k, top_p, seed, step0):
        """``n`` characters ``(B, n)``, sampling step ``i`` with seed ``(seed, step0 + i)``
        (``self.sample`` is this loop as a ``tf.function``)."""
        out = tf.TensorArray(tf.int32, size=n)
        table = self.input_table()
        for i in tf.range(n):
            token = choose(logits, temperature, top_k, top_p, tf.stack([seed, step0 + tf.cast(i, tf.int64)]))
            out = out.write(i, token)
            logits, states = self.step(token, states, table)
        return tf.transpose(out.stack()), logits, states  # (B, n)


def check_sampler(temperature, top_k, top_p):
    """The sampling settings ``choose`` takes (char-LM generation and seq2seq sampling).
    A ``top_k`` above the vocabulary size keeps every token, as 0 does."""
    if not temperature >= 0:
        raise SeqkitError(f"`temperature` must be >= 0 (0 means argmax); received {temperature}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0:
        raise SeqkitError(f"`top_k` must be >= 0, an integer (0 disables it); received {top_k!r}")
    if not 0 < top_p <= 1:
        raise SeqkitError(f"`top_p` must be in (0, 1] (1 disables it); received {top_p}")


# -- stepping a recurrent stack's cells (the TFLite step models) ----------------------


def flat_state_sizes(layers):
    """Each layer's state widths, ``[[h, c], [h], ...]`` (LSTM: h and c)."""
    return [list(s) if isinstance(s, (list, tuple)) else [s] for s in (layer.cell.state_size for layer in layers)]


def split_state(state, sizes):
    """``state`` ``[B, sum]`` -> per layer, the list of its state tensors."""
    flat = tf.split(state, [n for layer in sizes for n in layer], axis=1)
    out, i = [], 0
    for layer in sizes:
        out.append(flat[i : i + len(layer)])
        i += len(layer)
    return out


def join_state(states):
    return tf.concat([s for layer in states for s in layer], axis=1)


def cell_step(layer, x, states):
    """One step of a recurrent layer's cell, inference: ``(h, states)``."""
    return layer.cell.step(layer.cell.project_inputs(x), list(states))
