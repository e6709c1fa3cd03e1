"""Shared machinery of seqkit's recurrent cells and layers.

A seqkit cell splits one time step into two parts:

* ``project_inputs(x)``: the input projection ``x W + b`` for every gate at
  once. It does not depend on the previous state, so a layer computes it for
  all time steps in one matmul before the recurrence starts;
* ``step(xw_t, states)``: the recurrent part, one line per gate equation.

``call(inputs, states, training)`` chains the two, which keeps the Keras cell
contract: a seqkit cell also runs inside ``keras.layers.RNN``.

``RecurrentLayer`` is a ``keras.layers.RNN`` whose inner loop hoists the input
projection out of the time loop; masking, ``go_backwards``, ``stateful``,
``return_state`` and ``initial_state`` keep Keras' own semantics.
"""


import keras
import tensorflow as tf
from keras import ops

from seqkit import compat

_EMPTY_SEQUENCES = (
    "{name} received inputs with 0 time steps (shape {shape}); a recurrence needs at "
    "least one step. Drop empty sequences, or pad them to length 1 and mask the padding "
    "(argument `mask`): a fully masked row keeps its initial state."
)


def check_units(units):
    """Validate the `units` argument: a positive integer."""
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(
            f"Argument `units` must be a positive integer; received units={units!r}."
        )
    return units


def _resolve(getter, kind, examples, identifier, argument):
    """``getter(identifier)``, or a ValueError naming the argument and its value."""
    try:
        return getter(identifier)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"Unknown {kind} for argument `{argument}`: received {identifier!r}. "
            f"Use a Keras {kind} name such as {examples}."
        ) from e


def get_activation(identifier, argument):
    """Resolve a Keras activation, naming the argument when it is unknown."""
    return _resolve(keras.activations.get, "activation", "'tanh', 'relu' or 'sigmoid'", identifier, argument)


def get_initializer(identifier, argument):
    """Resolve a Keras initializer, naming the argument when it is unknown."""
    return _resolve(
        keras.initializers.get, "initializer", "'glorot_uniform', 'orthogonal', 'identity' or 'zeros'",
        identifier, argument,
    )


def check_rate(rate, argument):
    """Validate a dropout rate in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(
            f"Argument `{argument}` must be a float in [0, 1); received {argument}={rate!r}."
        )
    return float(rate)


def standard_gates(cell):
    """Whether a gated cell uses sigmoid gates and tanh, the form ``fused`` implements."""
    return cell.activation is keras.activations.tanh and cell.recurrent_activation is keras.activations.sigmoid


class RecurrentCell(keras.layers.Layer, compat.DropoutRNNCell):
    """Base of the seqkit cells: weights, dropout and the cell contract.

    Subclasses set ``gates`` (number of weight blocks: 1 for SimpleRNN, 4 for
    LSTM, 3 for GRU) and implement ``step``. ``kernel`` has shape
    ``(input_dim, gates * units)``, ``recurrent_kernel``
    ``(units, gates * units)``: the names, shapes and block order of Keras'
    built-in cells, so weights copy across with ``set_weights``.
    """

    gates = 1
    ARGS = (
        "units",
        "activation",
        "use_bias",
        "kernel_initializer",
        "recurrent_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "recurrent_regularizer",
        "bias_regularizer",
        "kernel_constraint",
        "recurrent_constraint",
        "bias_constraint",
        "dropout",
        "recurrent_dropout",
        "seed",
    )

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_units(units)
        self.activation = get_activation(activation, "activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer, "kernel_initializer")
        self.recurrent_initializer = get_initializer(
            recurrent_initializer, "recurrent_initializer"
        )
        self.bias_initializer = get_initializer(bias_initializer, "bias_initializer")
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = check_rate(dropout, "dropout")
        self.recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = self.units
        self.output_size = self.units

    # -- weights -----------------------------------------------------------
    def bias_shape(self):
        return (self.gates * self.units,)

    def make_bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        input_dim = input_shape[-1]
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self.bias_shape(),
                name="bias",
                initializer=self.make_bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    # -- the two halves of a step ------------------------------------------
    def input_bias(self):
        """The part of the bias added to ``x W`` (all of it, for most cells)."""
        return self.bias

    def project_inputs(self, x):
        """``x W + b`` for all gates: ``(..., D) -> (..., gates * units)``.

        Called once per sequence by ``RecurrentLayer`` with ``x`` of shape
        ``(B, T, D)``, or once per step by ``call`` with ``x`` of shape ``(B, D)``.
        """
        xw = ops.matmul(x, self.kernel)
        b = self.input_bias()
        return xw if b is None else xw + b

    def step(self, xw_t, states, recurrent_mask=None):
        """The recurrent part of one step; ``xw_t = x_t W + b``, ``(B, gates * units)``."""
        raise NotImplementedError

    def has_fused_form(self):
        """Whether ``fused_recurrence`` has a form for this cell's configuration
        (its activations); the layers check it before they project the inputs."""
        return False

    def fused_recurrence(self, xw, states, use_kernels=False, mask=None):
        """The whole recurrence over time-major ``xw`` ``(T, B, gates * units)``
        with a hand-written backward (``seqkit.layers.fused``): ``(hs, states)``,
        or None when this cell's configuration has no fused form. ``use_kernels``:
        run its loops as the compiled ops when they are available (training).
        ``mask``: ``(T, B)`` booleans or None; a masked step carries the states
        forward, and ``hs`` holds the carried ``h`` at every step."""
        return None

    # -- the Keras cell contract -------------------------------------------
    def call(self, inputs, states, training=False):
        if training and self.dropout > 0:
            inputs = inputs * self.get_dropout_mask(inputs)
        recurrent_mask = None
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self.get_recurrent_dropout_mask(keras.tree.flatten(states)[0])
        return self.step(self.project_inputs(inputs), states, recurrent_mask)

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        return [ops.zeros((batch_size, d), dtype=self.compute_dtype) for d in sizes]

    def cell_config(self):
        """The constructor arguments in ``ARGS``, serialized: shared by cell and layer."""
        config = {}
        for name in self.ARGS:
            value = getattr(self, name)
            if name.endswith("activation"):
                value = keras.activations.serialize(value)
            elif name.endswith(("initializer", "regularizer", "constraint")):
                value = keras.saving.serialize_keras_object(value)
            config[name] = value
        return config

    def get_config(self):
        return {**super().get_config(), **self.cell_config()}


class RecurrentLayer(keras.layers.RNN):
    """A ``keras.layers.RNN`` over a seqkit cell, with the input projection hoisted.

    The inner loop computes ``x W + b`` for every time step in one matmul of
    shape ``(B, T, D) @ (D, gates * units)``, then runs only ``cell.step``
    (the recurrent matmul and the gate equations) per step. Everything else
    (masks, ``go_backwards``, ``stateful``, ``initial_state``,
    ``return_state``, ``zero_output_for_mask``) is Keras' ``RNN``, except
    where Keras' masked paths are wrong (README, "Differences from Keras"):

    * ``zero_output_for_mask`` zeroes the masked steps of the returned
      *sequence* only, in the order the steps were processed (Keras zeroes by
      the unreversed mask when ``unroll=True`` and ``go_backwards=True``);
      with ``return_sequences=False`` the output is each row's last real
      output, as Keras documents (Keras returns zeros for a row whose last
      processed step is masked);
    * with ``go_backwards=True`` and ``return_sequences=True`` the output mask
      is reversed with the outputs, so a next layer reads the real steps
      (Keras passes the input mask on unreversed);
    * a sequence of 0 time steps is a ``ValueError`` (Keras fails inside TF).
    """

    cell_class = RecurrentCell

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        fused=True,
        **kwargs,
    ):
        self.fused = bool(fused)
        cell_kwargs = {k: kwargs.pop(k) for k in self.cell_class.ARGS[1:] if k in kwargs}
        cell = self.cell_class(
            units,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name=f"{type(self).__name__.lower()}_cell",
            **cell_kwargs,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )

    def build(self, sequences_shape, initial_state_shape=None):
        self.check_input_shape(sequences_shape)
        super().build(sequences_shape, initial_state_shape)

    def check_input_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank 3 (batch, timesteps, "
                f"features); received inputs with shape {tuple(shape)}. "
                "Add the missing axis, e.g. x[:, :, None] for scalar features."
            )
        if shape[1] == 0:
            raise ValueError(_EMPTY_SEQUENCES.format(name=type(self).__name__, shape=tuple(shape)))

    def check_initial_state(self, sequences, initial_state):
        states = keras.tree.flatten(initial_state)
        sizes = self.state_size
        if len(states) != len(sizes):
            raise ValueError(
                f"Argument `initial_state` of {type(self).__name__} must hold "
                f"{len(sizes)} tensor(s) of shape (batch, units) = (batch, {self.cell.units}); "
                f"received {len(states)}."
            )
        batch = sequences.shape[0]
        for i, (s, size) in enumerate(zip(states, sizes)):
            shape = tuple(s.shape)
            ok = len(shape) == 2 and shape[1] in (None, size)
            ok = ok and (batch is None or shape[0] is None or shape[0] == batch)
            if not ok:
                raise ValueError(
                    f"Argument `initial_state[{i}]` of {type(self).__name__} must have "
                    f"shape (batch, {size}) with batch={batch}; received shape {shape}."
                )

    def check_mask(self, sequences, mask):
        """A mask must be ``(batch, timesteps)``, the first two axes of the inputs
        (a longer or shorter one would be read out of step, silently, by the fused
        loop): a ValueError, or with sizes known only when the graph runs, a failed
        assertion. Returns ``sequences``, tied to that assertion."""
        mask = keras.tree.flatten(mask)[0]
        if mask is None:
            return sequences
        expected, shape = tuple(sequences.shape[:2]), tuple(mask.shape)
        message = (
            f"Argument `mask` of {type(self).__name__} must have shape (batch, timesteps) = "
            f"{expected}, the first two axes of the inputs; received shape {shape}"
        )
        if len(shape) != 2 or any(a is not None and b is not None and a != b for a, b in zip(shape, expected)):
            hint = "; drop the last axis: mask[..., 0]" if len(shape) == 3 and shape[2] == 1 else ""
            raise ValueError(f"{message}{hint}.")
        if None not in shape + expected:
            return sequences
        check = tf.debugging.assert_equal(tf.shape(mask), tf.shape(sequences)[:2], message=message)
        with tf.control_dependencies([check]):
            return tf.identity(sequences)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self.check_input_shape(sequences.shape)
        if sequences.shape[1] is None:  # T known only when the graph runs
            message = _EMPTY_SEQUENCES.format(name=type(self).__name__, shape="(batch, 0, features)")
            with tf.control_dependencies([tf.debugging.assert_positive(tf.shape(sequences)[1], message=message)]):
                sequences = tf.identity(sequences)
        if mask is not None:
            sequences = self.check_mask(sequences, mask)
        if initial_state is not None:
            self.check_initial_state(sequences, initial_state)
        elif self.stateful and self.states is not None:
            sequences = self.check_stateful_batch(sequences)
        return super().call(
            sequences, initial_state=initial_state, mask=mask, training=training
        )

    def check_stateful_batch(self, sequences):
        """A stateful layer's state holds the batch size it was built for; a batch of
        another size (e.g. the short last batch of ``predict``) is a ValueError, or,
        with the size known only when the graph runs, a failed assertion, saying so."""
        expected = int(keras.tree.flatten(self.states)[0].shape[0])
        message = (f"{type(self).__name__} layer {self.name!r} is stateful and was built for batch size "
                   f"{expected}: every batch must hold {expected} sequences, a short last batch too; feed full "
                   f"batches (drop or pad the remainder, e.g. Dataset.batch({expected}, drop_remainder=True)), or "
                   "copy the weights into the same model built with stateful=False for other batch sizes")
        if sequences.shape[0] is not None:
            if sequences.shape[0] != expected:
                raise ValueError(f"{message}; received a batch of {sequences.shape[0]}")
            return sequences
        with tf.control_dependencies([tf.debugging.assert_equal(tf.shape(sequences)[0], expected, message=message)]):
            return tf.identity(sequences)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if keras.tree.is_nested(mask):
            mask = mask[0]
        cell = self.cell
        # Dropout masks are drawn once per call and fixed across time steps
        # (Gal & Ghahramani 2016), as Keras does; RNN.call drew them already.
        if training and cell.dropout > 0:
            sequences = sequences * ops.expand_dims(cell.get_dropout_mask(sequences[:, 0, :]), 1)
        recurrent_mask = None
        if training and cell.recurrent_dropout > 0:
            recurrent_mask = cell.get_recurrent_dropout_mask(initial_state[0])

        # Time-major from here on: transposing x (B, T, D) is cheaper than
        # letting the loop transpose xw (B, T, gates * units) and its gradient.
        x = ops.transpose(sequences, (1, 0, 2))  # (T, B, D)
        if mask is not None:
            mask = ops.transpose(mask, (1, 0))  # (T, B)
        if self.fused and recurrent_mask is None and not self.unroll and cell.has_fused_form():
            result = self.fused_loop(x, list(initial_state), mask, training)
            if result is not None:
                return result
        xw = cell.project_inputs(x)  # (T, B, gates * units), one matmul

        def step(xw_t, states):
            return cell.step(xw_t, states, recurrent_mask)

        # Keras' rnn() takes a missing input_length to be inputs.shape[1], which
        # for time-major xw is the batch size: a graph traced with T unknown
        # (variable-length batches) would stop after B steps. [T] bounds the
        # loop by T instead (a list: a tensor would be read as per-row lengths).
        steps = sequences.shape[1] if sequences.shape[1] is not None else [ops.shape(sequences)[1]]
        last_output, outputs, states = compat.rnn(
            step,
            xw,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=steps,
            time_major=True,
            zero_output_for_mask=False,  # applied below: Keras' own is wrong in two cases
            return_all_outputs=self.return_sequences,
        )
        if self.zero_output_for_mask and mask is not None and self.return_sequences:
            # Zero the masked steps of the sequence, in the order processed
            # (Keras' unrolled loop zeroes by the unreversed mask). The last
            # output stays the last real one: the flag is about sequences.
            real = ops.cast(ops.flip(mask, axis=0) if self.go_backwards else mask, "bool")  # (T, B)
            outputs = ops.where(real[:, :, None], outputs, ops.zeros_like(outputs))
        return last_output, ops.transpose(outputs, (1, 0, 2)), states  # outputs: (B, T, H)

    def compute_mask(self, sequences, mask):
        """Keras' output mask, reversed with the outputs under ``go_backwards``."""
        output_mask = super().compute_mask(sequences, mask)
        if not (self.go_backwards and self.return_sequences):
            return output_mask
        if self.return_state:
            first = output_mask[0]
            return [None if first is None else ops.flip(first, axis=1)] + output_mask[1:]
        return None if output_mask is None else ops.flip(output_mask, axis=1)

    def fused_loop(self, x, initial_state, mask, training):
        """The recurrence through ``cell.fused_recurrence`` (hand-written BPTT):
        ``(last_output, outputs (B, T, H), states)`` as ``inner_loop``, or None
        when the cell has no fused form for this call. ``x`` ``(T, B, D)``,
        ``mask`` ``(T, B)`` booleans or None, both in time order.

        With a mask the loop returns the carried states at every step (a masked
        step keeps ``h`` and ``c``), and the outputs follow Keras' semantics
        from them: at a masked step the last real step's output (zeros before
        the first), or zeros with ``zero_output_for_mask``. ``last_output`` is
        the state after a row's last real step (zeros for a row with none) with
        or without ``zero_output_for_mask``: Keras' flag concerns the sequence
        only, though its own loop returns zeros there when the last step is padding.
        """
        cell = self.cell
        # Training steps run the loops as compiled ops when seqkit.kernels has
        # them; inference (and so export) keeps TensorFlow's own ops.
        if mask is not None:
            mask = ops.cast(mask, "bool")
        if self.go_backwards:
            # Reverse x, D wide, rather than xw, gates * units wide; ops.flip
            # (ReverseV2), as x[::-1] (a negative-stride StridedSlice) and its
            # gradient take about 10x as long.
            x = ops.flip(x, axis=0)
            mask = None if mask is None else ops.flip(mask, axis=0)
        result = cell.fused_recurrence(cell.project_inputs(x), initial_state, use_kernels=training is True, mask=mask)
        if result is None:
            return None
        hs, states = result  # hs: (T, B, H), in the order processed (as Keras)
        # The last output is h_T, the state (equal to hs[-1]): its gradient then
        # enters the loop's backward as δh_T, not as a (T, B, H) slice gradient.
        h_T = states[0]
        if mask is None:
            return h_T, ops.transpose(hs, (1, 0, 2)), states
        real = ops.expand_dims(mask, -1)  # (T, B, 1), in the order processed
        started = ops.cumsum(ops.cast(real, "int32"), axis=0) > 0  # a real step at or before t
        last_output = ops.where(started[-1], h_T, ops.zeros_like(h_T))  # (B, H)
        if not self.return_sequences:
            return last_output, ops.expand_dims(last_output, 1), states
        outputs = ops.where(real if self.zero_output_for_mask else started, hs, ops.zeros_like(hs))  # (T, B, H)
        return last_output, ops.transpose(outputs, (1, 0, 2)), states

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        config["fused"] = self.fused
        config["activity_regularizer"] = keras.saving.serialize_keras_object(
            self.activity_regularizer
        )
        return {**config, **self.cell.cell_config()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def units(self):
        return self.cell.units
