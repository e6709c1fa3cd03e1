r"""Vanishing and exploding gradients, measured on seqkit's own cells.

Backpropagation through time multiplies the error signal by one step
Jacobian per step (Bengio et al. 1994; Pascanu et al. 2013):

    ∂L_T/∂s_k = ∂L_T/∂s_T · ∂s_T/∂s_k,     ∂s_T/∂s_k = J_T J_{T-1} ... J_{k+1},
    J_t = ∂s_t/∂s_{t-1}                    (SimpleRNN: J_t = diag(φ'(a_t)) Uᵀ)

so its norm shrinks or grows roughly geometrically with the distance T - k.
``gradient_profile`` measures, for k = 1..T and averaged over a batch:

* ``grad_norm``: ‖∂L_T/∂s_k‖, the gradient of the last step's loss with
  respect to each earlier state;
* ``jacobian_norm``: ‖∂s_T/∂s_k‖₂, the spectral norm of the Jacobian product,
  estimated by power iteration on the explicit product (warm-started from the
  previous k, so it is a lower bound that converges to the spectral norm);
* the contribution of step k to ∂L̄_T/∂W for each weight (kernel W,
  recurrent kernel U, bias), as a Frobenius norm, where L̄_T is the batch
  mean of the per-example losses: the "split by time step" form of BPTT,
  ∂L̄_T/∂W = Σ_k ∂L̄_T/∂s_k · ∂s_k/∂W|immediate.

``s`` is the cell's whole state: ``h`` for SimpleRNN and GRU, ``[h, c]`` for
LSTM (the product of LSTM Jacobians runs through the cell state, which is
where its long-range gradient lives). The step Jacobians come from
``tf.GradientTape.batch_jacobian`` on the cell's readable ``step``; the
products are accumulated in float64 so that a gradient of 1e-30 is still
measured rather than flushed to zero.
"""

import contextlib
import dataclasses
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqkit.config import CELL_NAMES, check_seed
from seqkit.diagnose.common import check_counts, output_folder, write_csv
from seqkit.errors import SeqkitError, does_not_apply
from seqkit.io import check_data_exists, write_text
from seqkit.layers import recurrent_layer
from seqkit.layers.base import RecurrentLayer
from seqkit.plots import plot_panels
from seqkit.text.corpus import read_corpus

VANISHED = 1e-3  # "the gradient has vanished": below this fraction of its value at k = T
JACOBIAN_FLOATS = 1 << 24  # step Jacobians computed at once: at most 64 MiB of float32


@dataclasses.dataclass
class GradientProfile:
    """Gradient norms against the distance ``T - k`` (index 0 is k = T)."""

    name: str
    grad_norm: np.ndarray  # (T,) mean over the batch of ‖∂L_T/∂s_k‖
    jacobian_norm: np.ndarray  # (T,) mean over the batch of ‖∂s_T/∂s_k‖₂ (NaN when not computed)
    weight_grads: dict  # weight name -> (T,) ‖contribution of step k to ∂L_T/∂W‖_F

    @property
    def length(self):
        return len(self.grad_norm)

    def vanishing_distance(self, fraction=VANISHED):
        """The first distance T - k at which ‖∂L_T/∂s_k‖ < fraction × its value at k = T, or None."""
        below = np.nonzero(self.grad_norm < fraction * self.grad_norm[0])[0]
        return int(below[0]) if len(below) else None

    def rate(self):
        """Geometric change of ‖∂L_T/∂s_k‖ per step of distance: exp of the slope of a
        least-squares line through log-norm against distance (zeros left out)."""
        d = np.arange(self.length)
        keep = np.isfinite(self.grad_norm) & (self.grad_norm > 0)
        if keep.sum() < 2:
            return float("nan")
        slope = np.polyfit(d[keep], np.log(self.grad_norm[keep]), 1)[0]
        return float(math.exp(slope))

    def summary(self):
        d = self.vanishing_distance()
        last = self.grad_norm[-1] / self.grad_norm[0] if self.grad_norm[0] > 0 else float("nan")
        where = (f"falls below {VANISHED:g} of its value at k=T at distance {d}" if d is not None
                 else f"stays above {VANISHED:g} of its value at k=T over all {self.length} steps")
        return (f"{self.name}: |dL_T/dh_k| {where}; geometric rate {self.rate():.4f} per step; "
                f"ratio at distance {self.length - 1}: {last:.3g}")


# -- the measurement -----------------------------------------------------------


def _concat(states):
    return tf.concat(list(states), axis=-1)


def _split(cell, s):
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
    return tf.split(s, list(sizes), axis=-1)


def trajectory(cell, x, initial_states=None):
    """The cell's states along ``x`` (B, T, D): ``(prev, xw, s_T)`` where
    ``prev[t]`` is the state before step t (the initial state at t = 0), both
    time-major, and ``xw = x W + b`` the hoisted input projection."""
    x = tf.convert_to_tensor(x, dtype=cell.compute_dtype)
    states = list(initial_states) if initial_states is not None else cell.get_initial_state(x.shape[0])
    xw = tf.transpose(cell.project_inputs(x), [1, 0, 2])  # (T, B, G*H)
    prev = []
    for t in range(x.shape[1]):
        prev.append(_concat(states))
        _, states = cell.step(xw[t], states)
    return tf.stack(prev), xw, states


def step_jacobian_fn(cell):
    """``(xw, s_prev) -> ∂s/∂s_prev`` for rows of (N, G*H) and (N, S): (N, S, S)."""

    @tf.function(reduce_retracing=True)
    def jacobians(xw, s_prev):
        with tf.GradientTape() as tape:
            tape.watch(s_prev)
            _, states = cell.step(xw, _split(cell, s_prev))
            s = _concat(states)
        return tape.batch_jacobian(s, s_prev, experimental_use_pfor=True)

    return jacobians


def step_weight_grad_fn(cell):
    """``(x_t, s_prev, g) -> [‖∂(g · s_t)/∂W‖ for each weight]``: the immediate
    contribution of one step to the weight gradients, for cotangent ``g``."""

    @tf.function(reduce_retracing=True)
    def norms(x_t, s_prev, g):
        with tf.GradientTape() as tape:
            _, states = cell.call(x_t, _split(cell, s_prev))
            objective = tf.reduce_sum(_concat(states) * g)
        return [tf.norm(grad) for grad in tape.gradient(objective, cell.trainable_variables)]

    return norms


def spectral_norm(P, v, iterations):
    """Power iteration on ``PᵀP`` for a batch of matrices, from the unit vectors ``v``:
    (per-matrix estimates of ‖P‖₂, the updated vectors)."""
    for _ in range(iterations):
        w = np.einsum("bji,bj->bi", P, np.einsum("bij,bj->bi", P, v))
        n = np.linalg.norm(w, axis=1, keepdims=True)
        v = np.where(n > 0, w / np.where(n > 0, n, 1), v)
    return np.linalg.norm(np.einsum("bij,bj->bi", P, v), axis=1), v


@contextlib.contextmanager
def quiet_retracing():
    """Hide TensorFlow's retracing warning: each cell measured gets its own
    ``tf.function`` by design, which TensorFlow counts as retracing."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def random_readout(units, seed):
    """The loss of the random-cell diagnosis: ``L_T = h_T · r`` per example, r a fixed random unit vector."""
    r = np.random.default_rng(seed).standard_normal(units)
    r = tf.constant(r / np.linalg.norm(r), dtype="float32")
    return lambda h: tf.linalg.matvec(h, r)


def gradient_profile(cell, x, loss_fn, name, jacobian=True, iterations=10, seed=0):
    """Measure the gradient flow of ``cell`` (a built seqkit cell) over inputs ``x`` (B, T, D).

    ``loss_fn(h_T)`` gives the per-example loss of the last step (B,). Returns a
    ``GradientProfile``; ``jacobian=False`` skips the spectral norms (the
    costly part: one (S, S) product per step and example).
    """
    x = tf.convert_to_tensor(x, dtype="float32")
    batch, length = x.shape[0], x.shape[1]
    prev, xw, final = trajectory(cell, x)
    h_T = final[0]
    with tf.GradientTape() as tape:
        tape.watch(h_T)
        loss = tf.reduce_sum(loss_fn(h_T))
    g_h = tape.gradient(loss, h_T)
    if g_h is None:
        raise SeqkitError("the loss does not depend on the last hidden state; pass a loss of h_T")
    g = np.concatenate([g_h.numpy()] + [np.zeros(s.shape) for s in final[1:]], axis=1).astype(np.float64)
    size = g.shape[1]

    jacobians, weight_norms = step_jacobian_fn(cell), step_weight_grad_fn(cell)
    names = [v.name for v in cell.trainable_variables]
    grad_norm, jac_norm = np.zeros(length), np.full(length, np.nan)
    weight = {n: np.zeros(length) for n in names}
    P = np.tile(np.eye(size), (batch, 1, 1)) if jacobian else None  # ∂s_T/∂s_k, starting at k = T
    v = np.random.default_rng(seed).standard_normal((batch, size))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    chunk = max(1, JACOBIAN_FLOATS // (batch * size * size))
    for end in range(length, 0, -chunk):
        start = max(0, end - chunk)
        n = end - start
        J = jacobians(tf.reshape(xw[start:end], (n * batch, -1)), tf.reshape(prev[start:end], (n * batch, size)))
        J = J.numpy().astype(np.float64).reshape(n, batch, size, size)  # J[t - start] = ∂s_{t+1}/∂s_t
        for t in range(end - 1, start - 1, -1):  # step t produces s_k with k = t + 1; distance T - k
            d = length - 1 - t
            grad_norm[d] = np.linalg.norm(g, axis=1).mean()
            if jacobian:
                sigma, v = spectral_norm(P, v, iterations if d else 1)
                jac_norm[d] = sigma.mean()
            scale = np.abs(g).max()  # the weight gradient is linear in g: scale it into float32's range
            if scale > 0:
                norms = weight_norms(x[:, t], prev[t], tf.constant(g / (scale * batch), dtype="float32"))
                for n_, w in zip(names, norms):
                    weight[n_][d] = float(w) * scale
            g = np.einsum("bi,bij->bj", g, J[t - start])  # ∂L_T/∂s_{k-1} = ∂L_T/∂s_k · J_k
            if jacobian:
                P = P @ J[t - start]  # ∂s_T/∂s_{k-1} = ∂s_T/∂s_k · J_k
    return GradientProfile(name, grad_norm, jac_norm, weight)


# -- what to measure -------------------------------------------------------------


def build_cell(cell, units, input_dim, seed, **kwargs):
    """A freshly initialised seqkit cell (Keras' default initialisers, seeded)."""
    keras.utils.set_random_seed(seed)
    layer = recurrent_layer(cell, units, **kwargs)
    layer.build((None, None, input_dim))
    return layer.cell


def random_inputs(batch, length, dim, seed):
    return np.random.default_rng(seed).standard_normal((batch, length, dim)).astype(np.float32)


def text_windows(ids, batch, length, seed):
    """``batch`` windows of ``length + 1`` of a text's ``ids`` starting at seeded random offsets."""
    ids = np.asarray(ids, dtype=np.int32)
    if len(ids) < length + 1:
        raise SeqkitError(
            f"the text has {len(ids):,} characters, fewer than one window of {length + 1} (`length` + 1); "
            "pass more text or lower `length`"
        )
    starts = np.random.default_rng(seed).integers(0, len(ids) - length, size=batch)
    return np.stack([ids[s : s + length + 1] for s in starts])


def one_hot_text(text, batch, length, seed):
    """Real input for a bare cell: one-hot characters of ``text`` (B, T, vocabulary size)."""
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    windows = text_windows([index[c] for c in text], batch, length, seed)[:, :length]
    return np.eye(len(chars), dtype=np.float32)[windows]


def compare_cells(cells, units=128, length=200, batch_size=16, input_dim=32, seed=0, text=None, jacobian=True):
    """Profiles of freshly initialised cells (a list of distinct names from
    ``CELL_NAMES``) on one shared input and one shared readout.

    The input is N(0, 1) noise of ``input_dim`` features, or one-hot windows of
    ``text`` when given.
    """
    if isinstance(cells, str) or not cells or len(set(cells)) != len(cells):
        raise SeqkitError(f"`cells` must be a list of distinct cell names, e.g. ['rnn', 'lstm']; "
                          f"received {cells!r}")
    for name in cells:
        if name not in CELL_NAMES:
            raise SeqkitError(f"unknown cell {name!r} in `cells`; choose from {', '.join(CELL_NAMES)}")
    check_counts(units=units, length=length, batch_size=batch_size, input_dim=input_dim)
    x = one_hot_text(text, batch_size, length, seed) if text is not None else random_inputs(
        batch_size, length, input_dim, seed)
    loss_fn = random_readout(units, seed)
    with quiet_retracing():
        return [gradient_profile(build_cell(name, units, x.shape[-1], seed), x, loss_fn, name, jacobian=jacobian,
                                 seed=seed) for name in cells]


def profile_char_lm(run_dir, length=200, batch_size=16, seed=0, text=None):
    """The profile of a trained char-LM's top recurrent layer on real text.

    The loss is the cross-entropy of the last step's prediction of the next
    character; the layer's inputs are what the layers beneath it compute from
    the text (held fixed). ``text`` defaults to the run's own training corpus.
    """
    from seqkit.tasks import char_lm

    check_counts(length=length, batch_size=batch_size)
    config, vocab, model = char_lm.load(run_dir)
    if text is None:
        text = char_lm.load_text(config)
    windows = text_windows(vocab.encode(text, unknown="map"), batch_size, length, seed)
    recurrent = [layer for layer in model.layers if isinstance(layer, RecurrentLayer)]
    top = recurrent[-1]
    below = keras.Model(model.inputs[0], top.input)
    x = below(windows[:, :length], training=False)
    head, targets = model.get_layer("logits"), tf.constant(windows[:, length])

    def loss_fn(h):
        return keras.losses.sparse_categorical_crossentropy(targets, head(h), from_logits=True)

    return gradient_profile(top.cell, x, loss_fn, f"{config.cell} ({top.name})", seed=seed)


# -- reports -------------------------------------------------------------------


def write_report(profiles, out, title=None):
    """gradients.csv, gradients.png and summary.txt in ``out``; returns
    ``{"summary": text, "plot": the data behind each panel, "files": paths}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weight_names = sorted({n for p in profiles for n in p.weight_grads})
    rows = []
    for p in profiles:
        for d in range(p.length):
            rows.append([p.name, d, p.length - d, f"{p.grad_norm[d]:.6e}", f"{p.jacobian_norm[d]:.6e}"]
                        + [f"{p.weight_grads[n][d]:.6e}" if n in p.weight_grads else "" for n in weight_names])
    write_csv(out / "gradients.csv", ["cell", "distance", "k", "grad_norm", "jacobian_norm"]
               + [f"dL_d{n}" for n in weight_names], rows)
    panels = [
        {"curves": {p.name: p.grad_norm for p in profiles}, "ylabel": "mean ‖∂L_T/∂h_k‖",
         "title": "gradient of the last step's loss", "logy": True},
        {"curves": {p.name: p.jacobian_norm for p in profiles if np.isfinite(p.jacobian_norm).any()},
         "ylabel": "mean ‖∂h_T/∂h_k‖₂", "title": "Jacobian product (spectral norm)", "logy": True},
        {"curves": {p.name: p.weight_grads.get("recurrent_kernel", np.zeros(p.length)) for p in profiles},
         "ylabel": "‖step k's share of ∂L_T/∂U‖_F", "title": "recurrent-kernel gradient by time step",
         "logy": True},
    ]
    for panel in panels:
        panel["x"] = list(range(profiles[0].length))
    data = plot_panels(out / "gradients.png", panels, xlabel="distance T − k", title=title)
    summary = "\n".join(p.summary() for p in profiles) + "\n"
    write_text(out / "summary.txt", summary)
    return {"summary": summary, "plot": data,
            "files": [out / "gradients.png", out / "gradients.csv", out / "summary.txt"]}


# -- the diagnosis (seqkit diagnose gradients) ------------------------------------------


FRESH_CELLS = {"units": 128, "input_dim": 32}  # the sizes of fresh cells, when not given


def diagnose(run_dir=None, cells=None, out=None, units=None, length=200, batch_size=16, input_dim=None, seed=0,
             data=None):
    """Profile the gradient flow of a trained char-LM run's top layer (``run_dir``)
    or of freshly initialised ``cells`` (a list of names: one cell, or several
    compared on one input), and write the report to ``out`` (default:
    RUN_DIR/diagnose, or ./diagnose).

    ``units`` and ``input_dim`` size the fresh cells (None: 128 and 32); a run's
    model has its own, so with ``run_dir`` they are an error. ``data`` is a UTF-8 text
    file used as input instead of random input (for a run, its own training
    text by default). Returns ``write_report``'s ``{"summary", "plot", "files"}``.
    """
    if (run_dir is None) == (cells is None):
        what = "pass `run_dir` (a trained char-LM run) or `cells` (fresh cells, e.g. ['rnn', 'lstm'])"
        raise SeqkitError(f"{what}, not both" if run_dir is not None else f"nothing to diagnose; {what}")
    given = [name for name, value in (("units", units), ("input_dim", input_dim)) if value is not None]
    if run_dir is not None and given:
        raise does_not_apply(given, "a trained run's profile (`run_dir`: its model has its own sizes)")
    units = FRESH_CELLS["units"] if units is None else units
    input_dim = FRESH_CELLS["input_dim"] if input_dim is None else input_dim
    out = output_folder(out, run_dir)
    check_counts(units=units, length=length, batch_size=batch_size, input_dim=input_dim)
    check_data_exists(data)
    check_seed(seed, unset=None)
    text = read_corpus(data) if data else None
    if run_dir is not None:
        profiles = [profile_char_lm(run_dir, length, batch_size, seed, text)]
        title = f"gradient flow in {run_dir}"
    else:
        profiles = compare_cells(cells, units, length, batch_size, input_dim, seed, text)
        title = f"gradient flow at initialisation, H={units}, T={length}"
    return write_report(profiles, out, title=title)
