"""How ``seqkit serve`` runs model calls (``seqkit.scheduling``): TF Serving's dynamic
batching, deadlines and cancellation, and the bound on concurrent calls per model.

The scheduler's rules are tested in-process on stand-in servables whose signature records
what it is called with (oracle: each request's rows computed alone, and the calls seen).
The server's are tested on a real ``seqkit serve`` subprocess over HTTP and TF Serving's gRPC
stubs: batched answers equal the exported model run a request at a time (tf.saved_model.load
here), and a cancelled request stops using the server's CPU (read from /proc).
"""

import json
import os
import re
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import assert_one_line_errors, wait_for
from seqkit import scheduling
from seqkit.scheduling import BadRequest, BatchingParameters, Batcher, Call, DeadlineExceeded, Direct, Unavailable
from test_serve_versions import exported, free_port, metric_samples, publish, request, start  # noqa: F401


class Model:
    """A stand-in servable: ``y = 2 x`` per row; records the rows of every call, can be held at a gate,
    and fails a call holding a negative row (as a graph's assertion would)."""

    def __init__(self, name="m"):
        self.name, self.version = name, 1
        self.calls, self.gate = [], threading.Event()
        self.gate.set()
        self.signatures = {"serving_default": self.double}

    def double(self, x):
        self.calls.append(x.numpy().tolist())
        self.gate.wait()
        if np.any(x.numpy() < 0):
            raise tf.errors.InvalidArgumentError(None, None, "x must be >= 0")
        return {"y": 2 * x}

    @property
    def model(self):
        return self


def submit_together(batcher, model, rows, timeout=None):
    """Submit each entry of ``rows`` (a list of row lists) from its own thread, at once; returns the
    answers (or errors) in order."""
    answers, barrier = [None] * len(rows), threading.Barrier(len(rows))

    def one(i):
        barrier.wait()
        try:
            x = tf.constant(rows[i], tf.float32)
            answers[i] = batcher.run(model, "serving_default", {"x": x}, Call(timeout))["y"].tolist()
        except Exception as e:  # the test reads it
            answers[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows():
    model, sizes = Model(), []
    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000, num_batch_threads=1),
                      on_batch=lambda name, rows: sizes.append(rows))
    try:
        rows = [[float(i), float(i) + 0.5] for i in range(6)] + [[100.0]]
        answers = submit_together(batcher, model, [[r] for r in rows[:6]] + [[rows[6]]])
    finally:
        batcher.close()
    assert answers == [[[2 * v for v in r]] for r in rows[:6]] + [[[200.0]]]  # oracle: each request alone
    assert sum(sizes) == 7 and len(sizes) < 7 and max(sizes) <= 8  # merged, never over max_batch_size
    assert sorted(len(c) for c in model.calls) == sorted(sizes)


def test_allowed_batch_sizes_pad_with_the_first_row_and_the_padding_is_dropped():
    model = Model()
    batcher = Batcher(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1))
    try:
        answer = batcher.run(model, "serving_default", {"x": tf.constant([[1.0], [2.0], [3.0]])}, Call())
    finally:
        batcher.close()
    assert answer["y"].tolist() == [[2.0], [4.0], [6.0]]
    assert model.calls == [[[1.0], [2.0], [3.0], [1.0]]]  # padded to 4 with copies of the first row


def test_a_bad_request_in_a_batch_fails_alone():
    model = Model()
    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000, num_batch_threads=1))
    try:
        answers = submit_together(batcher, model, [[[1.0]], [[-1.0]], [[3.0]]])
    finally:
        batcher.close()
    assert answers[0] == [[2.0]] and answers[2] == [[6.0]]
    assert isinstance(answers[1], tf.errors.InvalidArgumentError)


def test_oversized_requests_and_a_full_queue_are_refused_as_tf_serving_does():
    model = Model()
    model.gate.clear()  # the first batch holds the only batch thread
    batcher = Batcher(BatchingParameters(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1))
    try:
        with pytest.raises(BadRequest, match="Task size 3 is larger than maximum batch size 2"):
            batcher.run(model, "serving_default", {"x": tf.zeros([3, 1])}, Call())
        running = threading.Thread(target=batcher.run, args=(model, "serving_default", {"x": tf.zeros([2, 1])},
                                                             Call()))
        running.start()
        while not model.calls:  # the first batch is running, so it has left the queue
            time.sleep(0.01)
        queued = threading.Thread(target=batcher.run, args=(model, "serving_default", {"x": tf.ones([2, 1])},
                                                            Call()))
        queued.start()  # fills the one queue slot
        wait_for(lambda: any(queue.batches for queue in batcher._queues.values()), "the second batch queued",
                 timeout=30, poll=0.01)
        with pytest.raises(Unavailable, match="batch scheduling queue .* is full"):
            batcher.run(model, "serving_default", {"x": tf.ones([2, 1])}, Call())
    finally:
        model.gate.set()
        running.join()
        queued.join()
        batcher.close()


def test_a_request_whose_deadline_passes_in_the_queue_is_withdrawn():
    model = Model()
    model.gate.clear()
    batcher = Batcher(BatchingParameters(max_batch_size=1, num_batch_threads=1))
    try:
        blocker = threading.Thread(target=batcher.run, args=(model, "serving_default", {"x": tf.zeros([1, 1])},
                                                             Call()))
        blocker.start()
        while not model.calls:
            time.sleep(0.01)
        with pytest.raises(DeadlineExceeded, match="deadline"):
            batcher.run(model, "serving_default", {"x": tf.fill([1, 1], 7.0)}, Call(0.2))
        model.gate.set()
        blocker.join()
        time.sleep(0.2)
    finally:
        model.gate.set()
        batcher.close()
    assert model.calls == [[[0.0]]]  # the withdrawn request never reached the model


def test_direct_calls_wait_for_a_free_slot_of_their_model_until_their_deadline():
    model, other = Model("m"), Model("other")
    model.gate.clear()
    direct = Direct(max_concurrent=1)
    holder = threading.Thread(target=direct.run, args=(model, "serving_default", {"x": tf.zeros([1])}, Call()))
    holder.start()
    while not model.calls:
        time.sleep(0.01)
    with pytest.raises(DeadlineExceeded):
        direct.run(model, "serving_default", {"x": tf.ones([1])}, Call(0.2))
    assert direct.run(other, "serving_default", {"x": tf.ones([1])}, Call(5))["y"].tolist() == [2.0]  # own slots
    model.gate.set()
    holder.join()
    assert direct.run(model, "serving_default", {"x": tf.ones([1])}, Call(5))["y"].tolist() == [2.0]


def test_waiting_calls_get_a_slot_in_the_order_they_came():
    slots = scheduling.Slots(1)
    slots.acquire(Call())
    order, threads = [], []

    def waiter(i):
        slots.acquire(Call(30))
        order.append(i)
        slots.release()

    for i in range(4):
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        while len(slots.waiters) < i + 1:  # queued before the next one comes
            time.sleep(0.005)
    slots.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3] and slots.free == 1


def test_a_cancelled_call_stops_inside_its_graph_loop():
    """Oracle: a counter the loop increments; after the deadline it stops short of the end and
    no longer moves (by construction, whatever the machine's speed)."""
    counter = tf.Variable(0, dtype=tf.int64)
    n = 10**9

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
    def loop(n):
        def body(i):
            counter.assign_add(1)
            return i + 1

        return {"i": tf.while_loop(lambda i: i < n, body, [tf.constant(0, tf.int64)])[0]}

    function = loop.get_concrete_function()
    with pytest.raises(DeadlineExceeded, match=r"deadline \(0.5 s"):
        Call(0.5).run(function, {"n": tf.constant(n, tf.int64)})
    stopped = int(counter.numpy())
    time.sleep(0.3)
    assert 0 < stopped < n and int(counter.numpy()) == stopped


def test_batching_parameters_read_tf_servings_text_format(tmp_path):
    parameters = BatchingParameters.from_text(
        "max_batch_size { value: 16 } batch_timeout_micros { value: 2000 } max_enqueued_batches { value: 4 }\n"
        "num_batch_threads { value: 2 } allowed_batch_sizes: 8 allowed_batch_sizes: 16 "
        "pad_variable_length_inputs: true thread_pool_name { value: 'x' }")
    assert parameters == BatchingParameters(16, 2000, 4, 2, (8, 16), True)
    assert BatchingParameters.from_text("") == BatchingParameters()  # TF Serving's defaults
    with pytest.raises(ValueError, match="allowed_batch_sizes must increase and end at max_batch_size"):
        BatchingParameters.from_text("max_batch_size { value: 16 } allowed_batch_sizes: 8")
    monitoring = scheduling.tf_serving_message("MonitoringConfig")()
    from google.protobuf import text_format

    text_format.Parse('prometheus_config { enable: true path: "/m" }', monitoring)
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == "/m"


def test_batching_and_monitoring_flags_are_one_line_errors(exported, tmp_path, capsys):  # noqa: F811
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 0 }", encoding="utf-8")
    broken = tmp_path / "broken.txt"
    broken.write_text("max_batch_size {", encoding="utf-8")
    relative = tmp_path / "monitoring.txt"
    relative.write_text('prometheus_config { enable: true path: "metrics" }', encoding="utf-8")
    base = exported.parent
    assert_one_line_errors([
        (["model-server", "--model_base_path", base, "--batching_parameters_file", params],
         r"--batching_parameters_file is set without --enable_batching"),
        (["model-server", "--model_base_path", base, "--enable_batching", "--batching_parameters_file", params],
         r"--batching_parameters_file .*max_batch_size must be >= 1"),
        (["serve", "--enable_batching", "--batching_parameters_file", broken], r"--batching_parameters_file .*text"),
        (["serve", "--enable_batching", "--batching_parameters_file", tmp_path / "none"],
         r"cannot read --batching_parameters_file"),
        (["serve", "--monitoring_config_file", broken], r"--monitoring_config_file .*MonitoringConfig"),
        (["model-server", "--model_base_path", base, "--monitoring_config_file", relative],
         r"--monitoring_config_file .*monitoring.txt: prometheus_config's path must start with '/'"),
    ], capsys, tmp_path / "never")


# -- a real server -----------------------------------------------------------------------------------------


def cpu_seconds(pid):
    """User + system CPU seconds of a process (/proc/PID/stat fields 14 and 15)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idle(pid, what):
    """The server uses (almost) no CPU for a second: nothing is still computing."""
    time.sleep(0.3)
    before = cpu_seconds(pid)
    time.sleep(1.0)
    assert cpu_seconds(pid) - before < 0.3, f"the server kept computing after {what}"


def wait_busy(pid, what, timeout=10.0):
    """Wait until the server has computed for 0.2 CPU-seconds: it is running ``what`` (not a sleep, which
    under a loaded machine may end before the request has reached the model)."""
    start = cpu_seconds(pid)
    wait_for(lambda: cpu_seconds(pid) - start >= 0.2, f"the server starting {what}", timeout=timeout, poll=0.02)


def generate_body(length):
    return {"signature_name": "generate",
            "instances": [{"prime": "ab", "length": length, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                           "seed": 1}]}


def test_batched_answers_equal_the_model_run_a_request_at_a_time(exported, tmp_path):  # noqa: F811
    publish(exported, tmp_path / "models" / "abc" / "1")
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 200000 } "
                      "num_batch_threads { value: 1 }", encoding="utf-8")
    rest, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    process = start(["serve", tmp_path / "models", "--port", rest, "--grpc-port", grpc_port, "--metrics",
                     "--enable_batching", "--batching_parameters_file", params, "--access-log"], url, "abc")
    log = ""
    try:
        texts = [f"ab{'c' * i} a" for i in range(12)]
        answers, barrier = {}, threading.Barrier(len(texts))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))

        def one(i):
            barrier.wait()
            if i % 2:  # half over REST, half over gRPC: one queue
                answers[i] = np.array(request(f"{url}/v1/models/abc:predict", {"instances": [texts[i]]})[1]
                                      ["predictions"][0]["probabilities"])
            else:
                req = predict_pb2.PredictRequest()
                req.model_spec.name = "abc"
                req.inputs["text"].CopyFrom(tf.make_tensor_proto([texts[i]]))
                answers[i] = tf.make_ndarray(stub.Predict(req, timeout=60).outputs["probabilities"])[0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        model = tf.saved_model.load(str(exported))
        for i, text in enumerate(texts):  # oracle: the exported model, this request alone
            alone = model.signatures["serving_default"](text=tf.constant([text]))["probabilities"].numpy()[0]
            np.testing.assert_allclose(answers[i], alone, atol=1e-5)
        samples = metric_samples(url)
        batches = samples[("seqkit_serve_batch_size_count", ("model", "abc"))]
        assert samples[("seqkit_serve_batch_size_sum", ("model", "abc"))] == len(texts)
        assert batches < len(texts)  # some requests shared a call
        status, body = request(f"{url}/v1/models/abc:predict", {"instances": texts[:9]})
        assert status == 400 and "Task size 9 is larger than maximum batch size 8" in body["error"]
        status, body = request(f"{url}/v1/models/abc:predict", generate_body(5))  # runs alone
        assert status == 200 and len(body["predictions"][0]) == 5
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[0]
        print(log)
    # --access-log: a line per request, REST (Uvicorn's) and gRPC
    assert len(re.findall(r'"POST /v1/models/abc(?::|%3A)predict HTTP/1.1" 200', log)) == len(texts) // 2 + 1
    assert log.count("\"gRPC PredictRequest 'abc'\" OK") == len(texts) // 2


def test_deadlines_and_gone_clients_stop_the_model_call_and_calls_per_model_are_bounded(exported, tmp_path):  # noqa: F811
    """A generate of 10^6 characters would run for minutes: over REST its deadline
    (--rest_api_timeout_in_ms) answers 504 and stops it; over gRPC the client's deadline does;
    a REST client that hangs up stops it too (499 in the metrics). With
    --max-concurrent-per-model 1, a short request waits for the running one until its deadline."""
    publish(exported, tmp_path / "models" / "abc" / "1")
    rest, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    process = start(["serve", tmp_path / "models", "--port", rest, "--grpc-port", grpc_port, "--metrics",
                     "--max-length", 10**7, "--rest_api_timeout_in_ms", 1500, "--max-concurrent-per-model", 1],
                    url, "abc")
    long = generate_body(10**6)
    try:
        status, body = request(f"{url}/v1/models/abc:predict", long)
        assert status == 504 and "deadline (1.5 s, --rest_api_timeout_in_ms) passed" in body["error"]
        assert_idle(process.pid, "a REST deadline")

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name = "abc", "generate"
        for key, value, dtype in (("prime", ["ab"], tf.string), ("length", [10**6], tf.int32),
                                  ("temperature", [1.0], tf.float32), ("top_k", [0], tf.int32),
                                  ("top_p", [1.0], tf.float32), ("seed", [1], tf.int64)):
            req.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype))
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(req, timeout=1.0)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert_idle(process.pid, "a gRPC client's deadline")

        holder = threading.Thread(target=request, args=(f"{url}/v1/models/abc:predict", long))
        holder.start()  # holds the model's one slot for 1.5 s
        wait_busy(process.pid, "the long request")
        short = predict_pb2.PredictRequest()
        short.model_spec.name = "abc"
        short.inputs["text"].CopyFrom(tf.make_tensor_proto(["ab"]))
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(short, timeout=0.5)  # a few ms alone: it waits for the slot
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        holder.join()
        assert stub.Predict(short, timeout=30).outputs["probabilities"].tensor_shape.dim[0].size == 1  # free again

        with socket.create_connection(("127.0.0.1", rest)) as s:  # a client that gives up after 0.5 s
            data = json.dumps(long).encode()
            s.sendall(b"POST /v1/models/abc:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            time.sleep(0.5)
        assert_idle(process.pid, "its REST client hung up")
        samples = metric_samples(url)
        rest_predict = {dict(labels)["status"]: value for (name, *labels), value in samples.items()
                        if name == "seqkit_serve_requests_total" and ("api", "rest_predict") in labels}
        assert rest_predict.get("499") == 1 and rest_predict.get("504") == 2
        grpc_predict = {dict(labels)["status"]: value for (name, *labels), value in samples.items()
                        if name == "seqkit_serve_requests_total" and ("api", "grpc_predict") in labels}
        assert grpc_predict.get("DEADLINE_EXCEEDED") == 2 and grpc_predict.get("OK") == 1
    finally:
        process.terminate()
        print(process.communicate(timeout=30)[0])
