"""seqkit serve as a real subprocess, spoken to over HTTP and with TF Serving's own gRPC client.

Oracle: the exported SavedModel loaded in this process.
"""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from seqkit import export
from seqkit.config import CharLMConfig, ClassifyConfig, Seq2SeqConfig
from seqkit.tasks import char_lm, classify, seq2seq

MAX_BODY = 4096
MAX_LENGTH = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    corpus = tmp / "corpus.txt"
    corpus.write_text("abc abd abe. " * 100, encoding="utf-8")
    config = CharLMConfig(data=[str(corpus)], units=12, layers=1, embedding_dim=8, seq_len=16, batch_size=8,
                          epochs=1, steps_per_epoch=10, seed=0, out=str(tmp / "run"))
    run_dir = char_lm.train(config, verbose=0)["run_dir"]
    base = tmp / "saved_models"
    export.export(run_dir, name="abc", out=base)
    export.export(run_dir, name="abc", out=base)  # version 2
    reviews = tmp / "reviews.csv"
    reviews.write_text("text,label\n" + "great fine film,pos\nbad dull film,neg\n" * 20, encoding="utf-8")
    export.export(classify.train(ClassifyConfig(data=str(reviews), tokens="word", units=8, embedding_dim=8,
                                                epochs=1, steps_per_epoch=3, seed=0, out=str(tmp / "reviews")),
                                 verbose=0)["run_dir"], name="reviews", out=base)
    export.export(seq2seq.train(Seq2SeqConfig(synthetic="reverse", length=4, size=300, units=8, embedding_dim=8,
                                              epochs=1, seed=0, out=str(tmp / "reverse")), verbose=0)["run_dir"],
                  name="reverse", out=base)
    export.export(classify.train(ClassifyConfig(synthetic="adding", length=6, size=64, units=8, epochs=1,
                                                steps_per_epoch=2, seed=0, out=str(tmp / "adding")),
                                 verbose=0)["run_dir"], name="adding", out=base)
    rest, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "seqkit.cli", "serve", str(base), "--port", str(rest), "--grpc-port",
         str(grpc_port), "--max-body-bytes", str(MAX_BODY), "--max-length", str(MAX_LENGTH),
         "--model-version-policy", "all"],  # both versions of abc (TF Serving's default, latest, serves only 2)
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    url = f"http://127.0.0.1:{rest}"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/models/abc", timeout=5):
                break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"seqkit serve did not start: {process.stdout.read()}")
            time.sleep(0.5)
    yield {"url": url, "grpc": f"127.0.0.1:{grpc_port}", "model": tf.saved_model.load(str(base / "abc" / "2")),
           "reviews": tf.saved_model.load(str(base / "reviews" / "1")),
           "reverse": tf.saved_model.load(str(base / "reverse" / "1")),
           "adding": tf.saved_model.load(str(base / "adding" / "1"))}
    process.terminate()
    process.wait(timeout=30)


def request(url, body=None, method=None):
    """(status, JSON) of an HTTP request; ``body`` may be raw bytes or a JSON-able object."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_status_of_all_versions_and_one(server):
    status, body = request(f"{server['url']}/v1/models/abc")
    assert status == 200
    assert [v["version"] for v in body["model_version_status"]] == ["1", "2"]
    assert all(v["state"] == "AVAILABLE" for v in body["model_version_status"])
    status, body = request(f"{server['url']}/v1/models/abc/versions/1")
    assert status == 200 and [v["version"] for v in body["model_version_status"]] == ["1"]


def test_metadata_lists_signatures(server):
    status, body = request(f"{server['url']}/v1/models/abc/versions/2/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "abc", "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "generate", "step"}
    assert signatures["generate"]["inputs"]["length"]["dtype"] == "DT_INT32"


def test_predict_row_and_columnar_formats_equal_the_model(server):
    texts = ["abc ab", "a"]
    expected = server["model"].signatures["serving_default"](text=tf.constant(texts))
    status, body = request(f"{server['url']}/v1/models/abc:predict", {"instances": texts})
    assert status == 200
    np.testing.assert_allclose([row["probabilities"] for row in body["predictions"]],
                               expected["probabilities"].numpy(), atol=1e-6)
    assert [row["next_char"] for row in body["predictions"]] == [c.decode() for c in expected["next_char"].numpy()]
    status, body = request(f"{server['url']}/v1/models/abc/versions/1:predict",
                           {"signature_name": "serving_default", "inputs": {"text": texts}})
    assert status == 200
    np.testing.assert_allclose(body["outputs"]["probabilities"], expected["probabilities"].numpy(), atol=1e-6)


def test_generate_over_rest(server):
    instance = {"prime": "ab", "length": 25, "temperature": 0.7, "top_k": 0, "top_p": 0.9, "seed": 5}
    status, body = request(f"{server['url']}/v1/models/abc:predict",
                           {"signature_name": "generate", "instances": [instance]})
    assert status == 200
    expected = server["model"].signatures["generate"](**{
        k: tf.constant([v], dtype={"prime": tf.string, "length": tf.int32, "top_k": tf.int32,
                                   "seed": tf.int64}.get(k, tf.float32)) for k, v in instance.items()})
    assert body["predictions"] == [expected["text"].numpy()[0].decode()]
    assert len(body["predictions"][0]) == 25


def test_classify_and_translate_over_rest(server):
    texts = ["great film", "dull film"]
    status, body = request(f"{server['url']}/v1/models/reviews:predict",
                           {"signature_name": "classify", "instances": texts})
    assert status == 200
    expected = server["reviews"].signatures["classify"](text=tf.constant(texts))
    assert [row["label"] for row in body["predictions"]] == [x.decode() for x in expected["label"].numpy()]
    assert body["predictions"][0]["classes"] == [c.decode() for c in expected["classes"].numpy()[0]]
    rows = [{"text": "abc", "beam_width": 2, "max_length": 0}, {"text": "ba", "beam_width": 2, "max_length": 0}]
    status, body = request(f"{server['url']}/v1/models/reverse:predict",
                           {"signature_name": "translate", "instances": rows})
    assert status == 200
    expected = server["reverse"].signatures["translate"](
        text=tf.constant(["abc", "ba"]), beam_width=tf.constant([2, 2]), max_length=tf.constant([0, 0]))
    assert [row["output"] for row in body["predictions"]] == [x.decode() for x in expected["output"].numpy()]
    status, body = request(f"{server['url']}/v1/models/reverse:predict", {"inputs": ["abc"]})
    assert status == 200 and set(body["outputs"]) == {"output", "score"}


@pytest.mark.parametrize("path, body, code, message", [
    ("/v1/models/nope:predict", {"instances": ["a"]}, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/abc/versions/9:predict", {"instances": ["a"]}, 404, "Specific(abc, 9)"),
    ("/v1/models/abc:predict", b"{not json", 400, "not valid JSON"),
    ("/v1/models/abc:predict", {"signature_name": "classify", "instances": ["a"]}, 400, "\"classify\" not found"),
    ("/v1/models/abc:predict", {"instances": [1.5]}, 400, "input text must hold string values"),
    ("/v1/models/abc:predict", {"signature_name": "generate", "instances": [
        {"prime": "a", "length": 2.5, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}]},
     400, "input length must hold int32 values of one shape: 2.5 is not a int32 value"),
    ("/v1/models/abc:predict", {"signature_name": "generate", "instances": [
        {"prime": "a", "length": "5", "temperature": None, "top_k": 0, "top_p": 1.0, "seed": 0}]},
     400, "is not a"),
    ("/v1/models/abc:predict", {"instances": [["a", "b"]]}, 400, "input text must have rank 1"),
    ("/v1/models/abc:predict", {"inputs": {"prompt": ["a"]}}, 400, "missing text; unknown prompt"),
    ("/v1/models/abc:predict", {"instances": ["a"], "inputs": ["a"]}, 400, "exactly one of"),
    ("/v1/models/abc:predict", {"instances": [""]}, 400, "at least one character"),
    ("/v1/models/abc:predict", {"signature_name": "generate", "instances": [
        {"prime": "a", "length": MAX_LENGTH + 1, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}]},
     400, f"length exceeds this server's limit of {MAX_LENGTH}"),
    ("/v1/models/abc:predict", {"signature_name": "generate", "instances": [
        {"prime": "a", "length": 5, "temperature": -1.0, "top_k": 0, "top_p": 1.0, "seed": 0}]},
     400, "temperature must be >= 0"),
    ("/v1/models/abc:predict", {"instances": ["a" * MAX_BODY]}, 413, "exceeds the limit of 4096"),
    ("/v2/anything", None, 404, "no such endpoint"),
])
def test_bad_requests_get_an_error_and_the_server_keeps_serving(server, path, body, code, message):
    status, reply = request(server["url"] + path, body)
    assert status == code
    assert message in reply["error"]
    status, reply = request(f"{server['url']}/v1/models/abc:predict", {"instances": ["abc"]})
    assert status == 200 and len(reply["predictions"]) == 1


def test_concurrent_requests_are_all_answered(server):
    def one(i):
        body = {"signature_name": "generate", "instances": [
            {"prime": "ab", "length": 40, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": i}]}
        return request(f"{server['url']}/v1/models/abc:predict", body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert all(status == 200 and len(body["predictions"][0]) == 40 for status, body in results)
    assert len({body["predictions"][0] for _, body in results}) > 1  # different seeds, different samples


# -- gRPC with TF Serving's client --------------------------------------------------------


def test_grpc_predict_and_metadata(server):
    channel = grpc.insecure_channel(server["grpc"])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "abc"
    req.model_spec.signature_name = "serving_default"
    req.inputs["text"].CopyFrom(tf.make_tensor_proto(["abc ab", "a"]))
    reply = stub.Predict(req, timeout=60)
    expected = server["model"].signatures["serving_default"](text=tf.constant(["abc ab", "a"]))
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["probabilities"]), expected["probabilities"].numpy(),
                               atol=1e-6)
    assert reply.model_spec.version.value == 2

    meta = get_model_metadata_pb2.GetModelMetadataRequest()
    meta.model_spec.name = "abc"
    meta.model_spec.version.value = 1
    meta.metadata_field.append("signature_def")
    reply = stub.GetModelMetadata(meta, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "generate", "step"}

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "abc"}), timeout=60)
    assert [s.version for s in status.model_version_status] == [1, 2]


def test_grpc_errors_have_status_codes(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server["grpc"]))
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nope"
    req.inputs["text"].CopyFrom(tf.make_tensor_proto(["a"]))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(req, timeout=60)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    req.model_spec.name = "abc"
    req.inputs["text"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(req, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input text must be string; got float" in error.value.details()


def test_grpc_checks_dtypes_and_declared_sizes_before_materialising_and_honours_output_filter(server):
    """As REST: an int64 or a float for an int32 input is refused, not cast (TF Serving refuses it too);
    a 60-byte proto declaring 2e7 strings is refused from its shape (tf.make_ndarray would repeat its one
    value 2e7 times: about 1 GB); output_filter keeps only the outputs named."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server["grpc"]))
    base = {"prime": ["ab"], "length": [5], "temperature": [0.0], "top_k": [0], "top_p": [1.0], "seed": [1]}
    dtypes = {"prime": tf.string, "length": tf.int32, "temperature": tf.float32, "top_k": tf.int32,
              "top_p": tf.float32, "seed": tf.int64}

    def generate(**changes):
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name = "abc", "generate"
        for key, value in base.items():
            value, dtype = changes.get(key, (value, dtypes[key]))
            req.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                     else tf.make_tensor_proto(value, dtype=dtype))
        return req

    for changes, message in [({"length": ([5], tf.int64)}, "input length must be int32; got int64"),
                             ({"length": ([20.7], tf.float32)}, "input length must be int32; got float"),
                             ({"prime": (huge_strings(), None)}, "declares 20,000,000 elements")]:
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(generate(**changes), timeout=60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.value.details()
    req = generate()
    req.output_filter.append("text")
    assert set(stub.Predict(req, timeout=60).outputs) == {"text"}
    req.output_filter.append("nope")
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(req, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "output_filter names nope" in error.value.details()


def huge_strings():
    """A TensorProto of shape [2e7] with one string value: about 60 bytes on the wire."""
    proto = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[b"ab"])
    proto.tensor_shape.dim.add(size=20_000_000)
    assert len(proto.SerializeToString()) < 100
    return proto


def test_serve_refuses_a_folder_without_models(tmp_path):
    ports = ["--port", str(free_port()), "--grpc-port", str(free_port())]  # not 8501/8500: they may be taken
    result = subprocess.run([sys.executable, "-m", "seqkit.cli", "serve", str(tmp_path), *ports], capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no models under {tmp_path}")
    assert not list(Path(tmp_path).iterdir())


def test_binary_outputs_follow_tf_servings_bytes_name_rule():
    """TF Serving base64-encodes an output whose name ends in _bytes ({"b64": ...}), whatever it holds;
    other string outputs are text."""
    from seqkit import serve as serving

    outputs = {"image_bytes": np.array([b"abc"], dtype=object), "label": np.array(["é".encode()], dtype=object)}
    assert serving.predict_response(outputs, row_format=True) == {
        "predictions": [{"image_bytes": {"b64": "YWJj"}, "label": "é"}]}
    assert serving.predict_response({"x_bytes": np.array([b"\x00"], dtype=object)}, row_format=False) == {
        "outputs": [{"b64": "AA=="}]}


def test_non_finite_outputs_are_json_and_outputs_without_rows_are_a_400():
    from seqkit import serve as serving

    body = serving.predict_response({"value": np.array([np.nan, np.inf], np.float32)}, row_format=True)
    assert json.loads(json.dumps(body, allow_nan=True))["predictions"][0] != 0  # NaN survives the round trip
    with pytest.raises(serving.BadRequest, match="do not share a batch dimension"):
        serving.predict_response({"a": np.zeros(3), "b": np.zeros(2)}, row_format=True)
    with pytest.raises(serving.BadRequest, match="do not share a batch dimension"):
        serving.predict_response({"a": np.float32(1.0)}, row_format=True)


# -- Classify, Regress, MultiInference: TF Serving's APIs over tf.Example ---------------------------------


def example(**features):
    """A serialized tf.Example: strings as bytes_list, lists of floats as float_list."""
    out = tf.train.Example()
    for key, value in features.items():
        if isinstance(value, str):
            out.features.feature[key].bytes_list.value.append(value.encode())
        else:
            out.features.feature[key].float_list.value.extend(value)
    return out


def test_classify_and_regress_over_rest_and_grpc_equal_the_predict_signatures(server):
    """Oracle: the export's own predict-style signatures (classify on text, serving_default on NaN-padded
    values) in this process. REST answers {"results": ...} as TF Serving's json_tensor does."""
    from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

    texts = ["great film", "dull bad"]
    expected = server["reviews"].signatures["classify"](text=tf.constant(texts))
    classes = [c.decode() for c in expected["classes"].numpy()[0]]
    status, body = request(f"{server['url']}/v1/models/reviews:classify",
                           {"signature_name": "classification", "examples": [{"text": t} for t in texts]})
    assert status == 200
    for row, probabilities in zip(body["results"], expected["probabilities"].numpy()):
        assert [label for label, _ in row] == classes
        np.testing.assert_allclose([score for _, score in row], probabilities, atol=1e-6)

    x = np.random.default_rng(0).uniform(size=(6, 2)).astype(np.float32)
    x[:, 1] = 0
    x[[1, 4], 1] = 1
    value = server["adding"].signatures["serving_default"](values=tf.constant(x[None]))["value"].numpy()[0]
    status, body = request(f"{server['url']}/v1/models/adding/versions/1:regress",
                           {"signature_name": "regression", "examples": [{"values": x.ravel().tolist()}]})
    assert status == 200 and abs(body["results"][0] - value) < 1e-5

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server["grpc"]))
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name, req.model_spec.signature_name = "reviews", "classification"
    req.input.example_list_with_context.context.CopyFrom(example(text="ignored: each example has its own"))
    for t in texts:
        req.input.example_list_with_context.examples.append(example(text=t))
    reply = stub.Classify(req, timeout=60)
    got = [[c.score for c in item.classes] for item in reply.result.classifications]
    np.testing.assert_allclose(got, expected["probabilities"].numpy(), atol=1e-6)

    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "adding", "regression"
    req.input.example_list.examples.append(example(values=x.ravel().tolist()))
    assert abs(stub.Regress(req, timeout=60).result.regressions[0].value - value) < 1e-5

    req = inference_pb2.MultiInferenceRequest()
    task = req.tasks.add()
    task.model_spec.name, task.model_spec.signature_name = "reviews", "classification"
    task.method_name = "tensorflow/serving/classify"
    req.input.example_list.examples.append(example(text=texts[0]))
    (result,) = stub.MultiInference(req, timeout=60).results
    np.testing.assert_allclose([c.score for c in result.classification_result.classifications[0].classes],
                               expected["probabilities"].numpy()[0], atol=1e-6)


def test_classify_errors_are_tf_servings(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server["grpc"]))
    status, body = request(f"{server['url']}/v1/models/reviews:classify", {"examples": [{"text": "great"}]})
    assert status == 400 and "Expected classification signature method_name to be tensorflow/serving/classify" \
        in body["error"]  # serving_default is a predict signature
    status, body = request(f"{server['url']}/v1/models/reviews:classify",
                           {"signature_name": "classification", "examples": [{"words": "great"}]})
    assert status == 400 and "text" in body["error"]  # the feature the signature parses is missing
    status, body = request(f"{server['url']}/v1/models/reviews:classify", {"examples": "great"})
    assert status == 400 and "examples" in body["error"]
    from tensorflow_serving.apis import regression_pb2

    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "reviews", "classification"
    req.input.example_list.examples.append(example(text="great"))
    with pytest.raises(grpc.RpcError) as error:
        stub.Regress(req, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "regression signature" in error.value.details()
