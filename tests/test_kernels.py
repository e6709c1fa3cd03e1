"""The compiled recurrence kernels (seqkit/kernels/recurrence.cc).

Oracle: the XLA loops of seqkit.layers.fused, themselves tested against the
readable cells (test_layers.py, which also runs the layers with training=True,
i.e. through these kernels) and the NumPy reference (test_reference.py).
Every op must give the same outputs, final states and gradients, at sizes that
do and do not fill the matmul kernel's register tiles (8 x 32 on AVX-512,
6 x 16 on AVX2, 4 x 16 generic), on every instruction-set path this CPU can
run (SEQKIT_KERNEL_ISA; the paths other than the default in child processes).
"""

import logging
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import seqkit.layers
from seqkit import kernels
from seqkit.layers import fused


@pytest.fixture(scope="module")
def ops():
    if kernels.compiler() is None:
        pytest.skip("no C++ compiler on this machine: the kernels cannot be built and the XLA loops run")
    if kernels.disabled():
        pytest.skip("SEQKIT_KERNELS turns the kernels off")
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible: the layers run there, never through these CPU kernels")
    ops = kernels.load()
    assert ops is not None, "a C++ compiler is present but the kernels did not build (see the seqkit log)"
    return ops


FUNCTIONS = {  # name -> (fused function taking (*inputs, use_kernels), gates)
    "rnn-tanh": (lambda *a, use_kernels: fused.simple_rnn(*a, "tanh", use_kernels), 1),
    "rnn-relu": (lambda *a, use_kernels: fused.simple_rnn(*a, "relu", use_kernels), 1),
    "rnn-linear": (lambda *a, use_kernels: fused.simple_rnn(*a, "linear", use_kernels), 1),
    "lstm": (lambda *a, use_kernels: fused.lstm(*a, use_kernels), 4),
    "gru-reset-after": (lambda *a, use_kernels: fused.gru_reset_after(*a, use_kernels), 3),
    "gru-reset-before": (lambda *a, use_kernels: fused.gru_reset_before(*a, use_kernels), 3),
}


def _inputs(name, T, B, H, seed=0):
    g = tf.random.Generator.from_seed(seed)
    gates = FUNCTIONS[name][1]
    args = [g.normal((T, B, gates * H)), g.normal((H, gates * H)) * H**-0.5, g.normal((B, H))]
    if name == "lstm":
        args.append(g.normal((B, H)))  # c0
    if name == "gru-reset-after":
        args.insert(2, g.normal((3 * H,)))  # the recurrent bias b^h
    return args


def _run(name, args, use_kernels):
    """Outputs, and the gradients of a loss weighting every output element differently."""
    assert (fused._kernel_ops(use_kernels, *args) is not None) == use_kernels  # the path asked for is the one taken
    with tf.GradientTape() as tape:
        tape.watch(args)
        outs = FUNCTIONS[name][0](*args, use_kernels=use_kernels)
        loss = sum(tf.reduce_sum(o * tf.sin(tf.reshape(tf.range(tf.size(o), dtype=o.dtype), o.shape))) for o in outs)
    return [o.numpy() for o in outs], [g.numpy() for g in tape.gradient(loss, args)]


def _op_types(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def _assert_kernel_equals_xla(name, args):
    (out_k, grad_k), (out_x, grad_x) = _run(name, args, True), _run(name, args, False)
    for a, b in zip(out_k, out_x):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(grad_k, grad_x):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.compute_path
@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("shape", [(7, 5, 13), (1, 3, 32), (12, 16, 40)], ids=lambda s: "TxBxH=%dx%dx%d" % s)
def test_kernel_equals_the_xla_loop(ops, name, shape):
    _assert_kernel_equals_xla(name, _inputs(name, *shape))


@pytest.mark.compute_path
def test_a_long_sequence_stays_equal(ops):
    """T = 200 at H = 64: errors do not grow along the recurrence."""
    _assert_kernel_equals_xla("lstm", _inputs("lstm", 200, 8, 64, seed=3))


def test_the_kernel_is_the_path_taken_when_asked(ops):
    """use_kernels=True puts the ops in the graph (forward and, under a tape, backward);
    use_kernels=False and float64 keep the XLA loops."""
    args = _inputs("lstm", 3, 2, 4)

    def with_gradient(use_kernels):
        def fn(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                loss = tf.reduce_sum(fused.lstm(*args, use_kernels=use_kernels)[0])
            return tape.gradient(loss, args)

        return fn

    assert {"SeqkitLstmForward", "SeqkitLstmBackward"} <= _op_types(with_gradient(True), *args)
    assert not any(t.startswith("Seqkit") for t in _op_types(with_gradient(False), *args))
    args64 = [tf.cast(a, tf.float64) for a in args]
    assert not any(t.startswith("Seqkit") for t in _op_types(with_gradient(True), *args64))


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_training_uses_the_kernel_and_inference_does_not(ops, name):
    """A training call traces the kernels; an inference call (what export
    traces) holds only TensorFlow's own ops, so SavedModels serve anywhere."""
    layer = getattr(seqkit.layers, name)(8, return_sequences=True)
    x = tf.random.normal((4, 6, 3))
    layer(x)
    train = _op_types(lambda x: layer(x, training=True), x)
    infer = _op_types(lambda x: layer(x, training=False), x)
    assert any(t.startswith("Seqkit") for t in train)
    assert not any(t.startswith("Seqkit") for t in infer)


@pytest.mark.compute_path
@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_evaluate_and_predict_use_the_kernels_and_exports_do_not(ops, name, tmp_path, monkeypatch):
    """SeqModel's test_step and predict_step trace the kernels' forward ops
    (model.evaluate, model.predict, validation), with the outputs of the XLA
    loops (the oracle: a plain inference call) to float32 rounding; a SavedModel
    of the same model, saved afterwards, still holds only TensorFlow's ops."""
    import keras

    from seqkit.training import SeqModel

    taken = []
    kernel_ops = fused._kernel_ops
    monkeypatch.setattr(fused, "_kernel_ops", lambda *a: taken.append(kernel_ops(*a)) or taken[-1])
    inputs = keras.Input((6, 3))
    outputs = keras.layers.Dense(2)(getattr(seqkit.layers, name)(8, return_sequences=True)(inputs))
    model = SeqModel(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32"), np.zeros((4, 6, 2), "float32")
    expected = model(x, training=False)
    assert taken and taken[-1] is None  # a plain call: the XLA loops
    predicted = model.predict(x, verbose=0)
    assert taken[-1] is ops
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
    taken.clear()
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), np.mean(predicted**2), rtol=1e-5)
    assert taken == [ops]
    taken.clear()
    tf.saved_model.save(model, str(tmp_path / "saved"))
    assert taken and not any(taken)
    assert b"Seqkit" not in (tmp_path / "saved" / "saved_model.pb").read_bytes()


def test_under_xla_the_xla_loops_run(ops):
    """Inside a jit_compile=True function (model.compile(jit_compile=True))
    XLA cannot run the kernels' ops: the layer keeps its XLA loops there, and
    the gradients equal the kernel path's."""
    layer = seqkit.layers.LSTM(8, return_sequences=True)
    x = tf.random.normal((4, 6, 3))
    layer(x)

    def grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
        return tape.gradient(loss, layer.trainable_weights)

    assert not any(t.startswith("Seqkit") for t in _op_types(tf.function(grads, jit_compile=True), x))
    for a, b in zip(tf.function(grads, jit_compile=True)(x), tf.function(grads)(x)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.compute_path
def test_results_do_not_depend_on_the_run(ops):
    """Each output tile is summed in a fixed order by one thread: repeated
    calls are bitwise equal (what --seed reproducibility rests on)."""
    args = _inputs("gru-reset-after", 20, 64, 96, seed=5)
    first, again = _run("gru-reset-after", args, True), _run("gru-reset-after", args, True)
    for a, b in zip(first[0] + first[1], again[0] + again[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.compute_path
def test_concurrent_calls_equal_serial_ones(ops):
    """Ops running at once (the two directions of a Bidirectional layer, say)
    share TensorFlow's thread pool: each one's helpers join it or not, and
    every result is still bitwise the serial one."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [("lstm", _inputs("lstm", 30, 16, 40, seed=s)) for s in range(3)]
    cases += [("gru-reset-before", _inputs("gru-reset-before", 30, 16, 40, seed=s)) for s in range(3)]
    serial = [_run(name, args, True) for name, args in cases]
    with ThreadPoolExecutor(len(cases)) as pool:
        concurrent = list(pool.map(lambda case: _run(case[0], case[1], True), cases))
    for (out_a, grad_a), (out_b, grad_b) in zip(serial, concurrent):
        for a, b in zip(out_a + grad_a, out_b + grad_b):
            np.testing.assert_array_equal(a, b)


def test_bad_shapes_are_an_error_not_a_crash(ops):
    g = tf.random.Generator.from_seed(0)
    x, U, s = g.normal((3, 2, 16)), g.normal((4, 16)), g.normal((2, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"U must be \(units, 4 \* units\)"):
        ops.seqkit_lstm_forward(x, g.normal((4, 12)), s, s)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"state must be \(2, 4\)"):
        ops.seqkit_lstm_forward(x, U, g.normal((3, 4)), s)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sequence must be \(T, B, 4 \* units\)"):
        ops.seqkit_lstm_forward(g.normal((3, 2, 4)), U, s, s)  # would read past its end
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sequence must be \(T, B, 1 \* units\)"):
        ops.seqkit_lstm_backward(x, s, s, tf.zeros((6, 3, 2, 4)), U)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"saved must be \(6, T, B, units\), got \[5,3,2,4\]"):
        ops.seqkit_lstm_backward(g.normal((3, 2, 4)), s, s, tf.zeros((5, 3, 2, 4)), U)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"hs must have d_hs's shape"):
        ops.seqkit_simple_rnn_backward(g.normal((3, 2, 4)), s, g.normal((2, 2, 4)), g.normal((4, 4)), activation="tanh")
    with pytest.raises(ValueError, match="must be rank 3"):  # the shape function, when a graph is built
        tf.function(ops.seqkit_lstm_forward).get_concrete_function(
            tf.TensorSpec([3, 16]), tf.TensorSpec([4, 16]), tf.TensorSpec([2, 4]), tf.TensorSpec([2, 4]))


def test_an_empty_sequence_returns_the_initial_state(ops):
    xw, U, h0, c0 = _inputs("lstm", 0, 2, 4)
    hs, h_T, c_T, saved = ops.seqkit_lstm_forward(xw, U, h0, c0)
    assert hs.shape == (0, 2, 4) and saved.shape == (6, 0, 2, 4)
    np.testing.assert_array_equal(h_T, h0)
    np.testing.assert_array_equal(c_T, c0)


# -- building ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_kernels_can_be_turned_off(monkeypatch, value):
    monkeypatch.setenv("SEQKIT_KERNELS", value)
    assert kernels._load.__wrapped__() is None


@pytest.mark.parametrize("cxx", ["false", "/nonexistent/g++", "false --with-an-argument"])
def test_a_failed_build_falls_back_with_one_warning(monkeypatch, tmp_path, caplog, cxx):
    """A compiler that fails or is missing leaves the XLA loops (and no half-written library)."""
    monkeypatch.setenv("SEQKIT_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.delenv("SEQKIT_KERNELS", raising=False)
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        assert kernels._load.__wrapped__() is None
    assert len([r for r in caplog.records if "kernels unavailable" in r.message]) == 1
    assert not list(tmp_path.rglob("*.so"))


def test_a_failed_build_is_not_tried_again_in_every_process(monkeypatch, tmp_path, caplog):
    """The failure is remembered beside the cache key; deleting it retries."""
    monkeypatch.setenv("SEQKIT_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    monkeypatch.delenv("SEQKIT_KERNELS", raising=False)
    assert kernels._load.__wrapped__() is None
    (failed,) = tmp_path.rglob("failed")
    assert "false failed" in failed.read_text()
    calls = []
    real_run = kernels.subprocess.run
    monkeypatch.setattr(kernels.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or real_run(cmd, **kw))
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        assert kernels._load.__wrapped__() is None
    assert all("-shared" not in cmd for cmd in calls)  # no compile, only the --version of the cache key
    assert any(f"delete {failed} to try again" in r.message for r in caplog.records)


@pytest.mark.parametrize("stop", ["signal", "timeout"])
def test_a_stopped_compiler_is_not_remembered_as_a_failed_build(monkeypatch, tmp_path, stop):
    """A compiler killed (out of memory, say: several test workers build at once on a fresh
    machine) or timed out says nothing about the source: no ``failed`` file, so the next
    process compiles again rather than training on the XLA loops for good."""
    fake = tmp_path / "cxx"
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo fake 1.0; exit 0; }\nkill -9 $$\n')
    fake.chmod(0o755)
    monkeypatch.setenv("SEQKIT_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.delenv("SEQKIT_KERNELS", raising=False)
    if stop == "timeout":
        real_run = kernels.subprocess.run

        def run(cmd, **kw):
            if "-shared" in cmd:
                raise kernels.subprocess.TimeoutExpired(cmd, kw.get("timeout"))
            return real_run(cmd, **kw)

        monkeypatch.setattr(kernels.subprocess, "run", run)
    assert kernels._load.__wrapped__() is None  # the XLA loops, this time
    assert not list((tmp_path / "cache").rglob("failed"))
    assert kernels._load.__wrapped__() is None and not list((tmp_path / "cache").rglob("failed"))


def test_a_build_is_cached(ops, monkeypatch, tmp_path):
    """The second build is the first one's library: same path, not rewritten."""
    import tensorflow as tf

    monkeypatch.setenv("SEQKIT_KERNEL_CACHE", str(tmp_path))
    first = kernels._build(tf, kernels.compiler())
    stamp = first.stat().st_mtime_ns
    assert kernels._build(tf, kernels.compiler()) == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == ["recurrence.so"]  # no temporaries left


ISA_CHECK = textwrap.dedent("""
    import sys
    import numpy as np, tensorflow as tf
    from seqkit import kernels
    from seqkit.layers import fused
    assert kernels.variant().startswith("isa=" + sys.argv[1] + " "), kernels.variant()
    g = tf.random.Generator.from_seed(0)
    T, B, H = 9, 13, 21  # B: 2 whole tiles and a part on every path; H: a part panel
    cases = {
        "rnn": (lambda *a, use_kernels: fused.simple_rnn(*a, "tanh", use_kernels), [g.normal((T, B, H)), g.normal((H, H)) / 5, g.normal((B, H))]),
        "lstm": (fused.lstm, [g.normal((T, B, 4 * H)), g.normal((H, 4 * H)) / 5, g.normal((B, H)), g.normal((B, H))]),
        "gru": (fused.gru_reset_after, [g.normal((T, B, 3 * H)), g.normal((H, 3 * H)) / 5, g.normal((3 * H,)), g.normal((B, H))]),
        "gru-before": (fused.gru_reset_before, [g.normal((T, B, 3 * H)), g.normal((H, 3 * H)) / 5, g.normal((B, H))]),
    }
    for name, (fn, args) in cases.items():
        results = []
        for use_kernels in (True, False):
            with tf.GradientTape() as tape:
                tape.watch(args)
                outs = fn(*args, use_kernels=use_kernels)
                loss = sum(tf.reduce_sum(tf.sin(o)) for o in outs)
            results.append([o.numpy() for o in outs] + [d.numpy() for d in tape.gradient(loss, args)])
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, atol=1e-4)
    print(kernels.variant(), "equal to the XLA loops")
""")


@pytest.mark.parametrize("isa", kernels.ISAS)
def test_every_isa_path_this_cpu_runs_equals_the_xla_loops(ops, tmp_path, isa):
    """Each instruction-set path (SEQKIT_KERNEL_ISA) built in a child process (loading
    a second copy of the ops here would register them twice) and checked against the
    XLA loops: the AVX-512 and AVX2 register tiles and the portable one differ only in
    summation order."""
    if isa not in kernels.cpu_isas():
        pytest.skip(f"this CPU cannot run the {isa} path (it has {', '.join(kernels.cpu_isas())}); "
                    "test_every_isa_path_compiles builds it")
    env = dict(os.environ, SEQKIT_KERNEL_ISA=isa)
    if isa != kernels.isa():  # the default path's library is the one this process built: no second build
        env["SEQKIT_KERNEL_CACHE"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", ISA_CHECK, isa], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "equal to the XLA loops" in done.stdout


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the x86 paths; elsewhere only generic exists")
@pytest.mark.parametrize("isa", [i for i in kernels.ISAS if i not in kernels.cpu_isas()] or ["none"])
def test_every_isa_path_compiles(ops, tmp_path, isa):
    """A path this CPU cannot run still compiles (its intrinsics and tile shape
    build) with the flags of a CPU that has it, and the library holds that
    path's vector registers (zmm for AVX-512, ymm FMAs for AVX2)."""
    if isa == "none":
        pytest.skip("this CPU runs every path: test_every_isa_path_this_cpu_runs_equals_the_xla_loops covers them")
    flags = {"avx512": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma"], "avx2": ["-mavx2", "-mfma"]}[isa]
    out = tmp_path / "recurrence.so"
    cmd = [*kernels.compiler(), "-shared", "-fPIC", "-O1", "-w", *flags, str(kernels.SOURCE), "-o", str(out),
           *kernels._tf_flags(tf)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    if shutil.which("objdump"):
        code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(out)], capture_output=True, text=True).stdout
        assert ("zmm" if isa == "avx512" else "vfmadd231ps %ymm") in code


def test_an_isa_the_cpu_cannot_run_is_refused(monkeypatch, caplog):
    """SEQKIT_KERNEL_ISA naming an unknown path, or one this CPU lacks, is a warning
    naming the variable and the choices, and the XLA loops run (no illegal instruction)."""
    monkeypatch.delenv("SEQKIT_KERNELS", raising=False)
    lacking = [i for i in kernels.ISAS if i not in kernels.cpu_isas()]
    for value in ["sse9", *lacking]:
        monkeypatch.setenv("SEQKIT_KERNEL_ISA", value)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="seqkit"):
            assert kernels._load.__wrapped__() is None
        (record,) = [r for r in caplog.records if "kernels unavailable" in r.message]
        assert f"SEQKIT_KERNEL_ISA={value}" in record.message and "generic" in record.message


def test_the_default_isa_is_the_best_the_cpu_has(monkeypatch):
    monkeypatch.delenv("SEQKIT_KERNEL_ISA", raising=False)
    assert kernels.isa() == kernels.cpu_isas()[0]
    assert kernels.cpu_isas()[-1] == "generic"


def test_an_unwritable_cache_builds_in_the_temporary_directory(ops, monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("SEQKIT_KERNEL_CACHE", str(blocked / "cache"))  # under a file: mkdir fails
    monkeypatch.setattr(kernels.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    built = kernels._build(tf, kernels.compiler())
    assert built.is_relative_to(tmp_path / "tmp") and built.stat().st_size > 100_000


def test_a_damaged_cached_library_is_built_again(ops, tmp_path):
    """A cached library that does not load (truncated, say) is rebuilt, not
    silently given up on. In a child process: loading a second copy of the
    ops here would register them twice."""
    target = kernels._library_path(tf, kernels.compiler()).relative_to(kernels.cache_dir())
    damaged = tmp_path / target
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x7fELF not really")
    env = dict(os.environ, SEQKIT_KERNEL_CACHE=str(tmp_path))
    code = "from seqkit import kernels; assert kernels.load() is not None"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    assert damaged.stat().st_size > 100_000  # a real library again


# -- end to end ---------------------------------------------------------------------


FIT_CASES = {
    "lstm": dict(name="LSTM"),
    "gru-reset-before-stateful": dict(name="GRU", reset_after=False, stateful=True),
    "rnn-relu-backwards": dict(name="SimpleRNN", activation="relu", go_backwards=True),
}


@pytest.mark.compute_path
@pytest.mark.parametrize("case", list(FIT_CASES))
def test_model_fit_through_the_kernels_equals_the_readable_step(ops, case, monkeypatch):
    """Keras' traced train function (model.fit) with the kernels against the
    same model with fused=False (autodiff through the readable step): the
    weights after three SGD steps agree."""
    import keras

    taken = []
    kernel_ops = fused._kernel_ops
    monkeypatch.setattr(fused, "_kernel_ops", lambda *a: taken.append(kernel_ops(*a)) or taken[-1])

    options = dict(FIT_CASES[case])
    layer_class = getattr(seqkit.layers, options.pop("name"))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24, 7, 3)).astype("float32"), rng.standard_normal((24, 1)).astype("float32")
    weights, models = None, []
    for fused_path in (True, False):
        model = keras.Sequential([
            keras.Input((7, 3), batch_size=8),
            layer_class(12, fused=fused_path, **options),
            keras.layers.Dense(1),
        ])
        weights = weights or model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        models.append(model)
    kernel_model, readable_model = models
    assert any(t is not None for t in taken)  # fit's train function traced the kernels
    assert not all(np.array_equal(a, b) for a, b in zip(kernel_model.get_weights(), weights))  # it trained
    for a, b in zip(kernel_model.get_weights(), readable_model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_state_of_unknown_width_at_trace_time(ops):
    """The ops' shape functions take the state width from U when the initial
    state's is unknown (an input_signature of (None, None)), as the XLA loops do."""
    layer = seqkit.layers.GRU(6, reset_after=False, return_sequences=True)
    x = tf.random.normal((2, 5, 3))
    h0 = tf.random.normal((2, 6))
    layer(x)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3]), tf.TensorSpec([None, None])])
    def grads(x, h0):
        with tf.GradientTape() as tape:
            hs = layer(x, initial_state=[h0], training=True)
            loss = tf.reduce_sum(tf.sin(hs))
        assert hs.shape[-1] == 6
        return tape.gradient(loss, layer.trainable_weights)

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x, initial_state=[h0], training=False)))
    for a, b in zip(grads(x, h0), tape.gradient(loss, layer.trainable_weights)):
        np.testing.assert_allclose(a, b, atol=1e-5)


# -- masks ----------------------------------------------------------------------------


MASKED_FUNCTIONS = {  # name -> fused function taking (*inputs, use_kernels, mask)
    "rnn-tanh": lambda *a, use_kernels, mask: fused.simple_rnn(*a, "tanh", use_kernels, mask),
    "rnn-relu": lambda *a, use_kernels, mask: fused.simple_rnn(*a, "relu", use_kernels, mask),
    "lstm": lambda *a, use_kernels, mask: fused.lstm(*a, use_kernels, mask),
    "gru-reset-after": lambda *a, use_kernels, mask: fused.gru_reset_after(*a, use_kernels, mask),
    "gru-reset-before": lambda *a, use_kernels, mask: fused.gru_reset_before(*a, use_kernels, mask),
}


def _mask(T, B, seed=0):
    """(T, B), 1 at real steps: rows right-padded, pre-padded, with holes, and one fully masked."""
    rng = np.random.default_rng(seed)
    t, lengths = np.arange(T)[:, None], rng.integers(0, T + 1, B)
    m = rng.random((T, B)) > 0.4  # holes
    m[:, 0::4] = t < lengths[0::4]  # right-padded
    m[:, 1::4] = t >= T - lengths[1::4]  # pre-padded
    m[:, 3 % B] = False
    return tf.constant(m.astype("float32"))


def _run_masked(name, args, mask, use_kernels):
    assert (fused._kernel_ops(use_kernels, *args) is not None) == use_kernels  # the path asked for is the one taken
    with tf.GradientTape() as tape:
        tape.watch(args)
        outs = MASKED_FUNCTIONS[name](*args, use_kernels=use_kernels, mask=mask)
        loss = sum(tf.reduce_sum(o * tf.sin(tf.reshape(tf.range(tf.size(o), dtype=o.dtype), o.shape))) for o in outs)
    return [o.numpy() for o in outs], [g.numpy() for g in tape.gradient(loss, args)]


@pytest.mark.compute_path
@pytest.mark.parametrize("name", list(MASKED_FUNCTIONS))
@pytest.mark.parametrize("shape", [(7, 13, 21), (12, 16, 40)], ids=lambda s: "TxBxH=%dx%dx%d" % s)
def test_masked_kernel_equals_the_masked_xla_loop(ops, name, shape):
    """The ...Masked ops against the masked XLA loops (themselves tested against
    each sequence run alone: test_layers.py), for right-padded, pre-padded,
    holed and fully masked rows: outputs <= 1e-5, gradients <= 1e-4."""
    args, mask = _inputs(name, *shape), _mask(*shape[:2])
    (out_k, grad_k), (out_x, grad_x) = _run_masked(name, args, mask, True), _run_masked(name, args, mask, False)
    for a, b in zip(out_k, out_x):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(grad_k, grad_x):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.compute_path
@pytest.mark.parametrize("name", ["rnn-tanh", "lstm", "gru-reset-after"])
def test_a_mask_of_ones_gives_the_unmasked_kernels_results(ops, name):
    """Known answer: with every step real, the masked ops compute what the
    unmasked ones do, bitwise."""
    args = _inputs(name, 9, 13, 21, seed=2)
    with_mask = _run_masked(name, args, tf.ones((9, 13)), True)
    without = _run(name, args, True)
    for a, b in zip(with_mask[0] + with_mask[1], without[0] + without[1]):
        np.testing.assert_array_equal(a, b)


MASKED_OPS = {  # layer -> (forward op, backward op) of a masked training step
    "SimpleRNN": ("SeqkitSimpleRnnForwardMasked", "SeqkitSimpleRnnBackwardMasked"),
    "LSTM": ("SeqkitLstmForwardMasked", "SeqkitLstmBackwardMasked"),
    "GRU": ("SeqkitGruResetAfterForwardMasked", "SeqkitGruResetAfterBackward"),  # the saved planes carry the mask
}


@pytest.mark.parametrize("name", list(MASKED_OPS))
def test_masked_training_uses_the_masked_kernels(ops, name):
    """A masked training step (forward and backward) runs the masked ops; a
    masked inference call holds only TensorFlow's own ops (exports)."""
    layer = getattr(seqkit.layers, name)(8, return_sequences=True)
    x, mask = tf.random.normal((4, 6, 3)), tf.constant(np.arange(6)[None] < np.array([[6], [3], [1], [4]]))
    layer(x)

    def train(x, mask):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(layer(x, mask=mask, training=True)))
        return tape.gradient(loss, layer.trainable_weights)

    assert set(MASKED_OPS[name]) <= _op_types(train, x, mask)
    assert not any(t.startswith("Seqkit") for t in _op_types(lambda x, m: layer(x, mask=m, training=False), x, mask))


def test_a_mask_of_the_wrong_shape_is_an_error(ops):
    g = tf.random.Generator.from_seed(0)
    x, U, s = g.normal((3, 2, 16)), g.normal((4, 16)), g.normal((2, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mask must be \(T, B\) = \(3, 2\), got \[2,3\]"):
        ops.seqkit_lstm_forward_masked(x, U, s, s, tf.ones((2, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mask must be \(T, B\) = \(3, 2\), got \[3\]"):
        ops.seqkit_simple_rnn_backward_masked(g.normal((3, 2, 4)), s, g.normal((3, 2, 4)), g.normal((4, 4)),
                                               tf.ones((3,)), activation="tanh")
