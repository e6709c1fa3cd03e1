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

import tensorflow as tf


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
