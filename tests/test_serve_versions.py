"""``seqkit serve`` keeps up with its folder as TF Serving does: versions and models that
appear are loaded, versions the policy drops or whose folder goes are unloaded, a version
that fails to load is reported and the others keep serving.

A real ``seqkit serve`` subprocess polling every 0.2 s, spoken to over HTTP and with TF
Serving's gRPC stubs. Oracle: the folder's contents and the exported model loaded here.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from conftest import assert_one_line_errors, wait_for
from seqkit import export
from seqkit.config import CharLMConfig
from seqkit.serve import VersionPolicy
from seqkit.tasks import char_lm

POLL = 0.2  # seconds between polls


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def publish(source, target):
    """Copy a version folder into place the way seqkit export writes one: a hidden folder, then a rename."""
    tmp = target.parent / f".{target.name}.tmp"
    shutil.copytree(source, tmp)
    os.rename(tmp, target)


def states(url, name):
    status, body = request(f"{url}/v1/models/{name}")
    if status != 200:
        return {}
    return {int(v["version"]): (v["state"], v["status"]["error_message"]) for v in body["model_version_status"]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions")
    corpus = tmp / "corpus.txt"
    corpus.write_text("abc abd abe. " * 100, encoding="utf-8")
    run_dir = char_lm.train(CharLMConfig(data=[str(corpus)], units=8, layers=1, embedding_dim=4, seq_len=16,
                                         batch_size=8, epochs=1, steps_per_epoch=3, seed=0, out=str(tmp / "run")),
                            verbose=0)["run_dir"]
    return export.export(run_dir, name="abc", out=tmp / "exported")  # .../abc/1


@pytest.fixture
def server(exported, tmp_path):
    base = tmp_path / "models"
    publish(exported, base / "abc" / "1")
    rest, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    process = start(["serve", base, "--port", rest, "--grpc-port", grpc_port, "--file_system_poll_wait_seconds", POLL,
                     "--metrics"], url, "abc")
    yield {"url": url, "grpc": f"127.0.0.1:{grpc_port}", "base": base, "source": exported, "process": process}
    process.terminate()
    log = process.communicate(timeout=30)[0]
    print(log)


def served_version(url, name="abc"):
    """The version a request without a version reaches (the predict answer does not say; status does)."""
    status, body = request(f"{url}/v1/models/{name}/metadata")
    return int(body["model_spec"]["version"]) if status == 200 else None


def test_new_versions_and_models_are_picked_up_and_the_latest_policy_unloads_the_old(server):
    url, base = server["url"], server["base"]
    assert states(url, "abc") == {1: ("AVAILABLE", "")}
    publish(server["source"], base / "abc" / "2")
    wait_for(lambda: states(url, "abc") == {1: ("END", ""), 2: ("AVAILABLE", "")}, "version 2 replaces 1")
    assert served_version(url) == 2
    status, body = request(f"{url}/v1/models/abc/versions/1:predict", {"instances": ["ab"]})
    assert status == 404 and "Specific(abc, 1)" in body["error"]
    status, body = request(f"{url}/v1/models/abc:predict", {"instances": ["ab"]})
    expected = tf.saved_model.load(str(server["source"])).signatures["serving_default"](text=tf.constant(["ab"]))
    assert status == 200
    np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected["probabilities"].numpy()[0],
                               atol=1e-6)

    publish(server["source"], base / "xyz" / "1")  # a new model, no restart
    wait_for(lambda: states(url, "xyz") == {1: ("AVAILABLE", "")}, "model xyz is served")
    assert request(f"{url}/v1/models/xyz:predict", {"instances": ["ab"]})[0] == 200


def test_a_version_that_fails_to_load_is_reported_and_the_last_good_one_keeps_serving(server):
    url, base = server["url"], server["base"]
    broken = base / "abc" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    wait_for(lambda: states(url, "abc").get(2, ("",))[0] == "END", "version 2 fails")
    state, error = states(url, "abc")[2]
    assert error, "a failed load carries its error"
    assert states(url, "abc")[1] == ("AVAILABLE", "") and served_version(url) == 1
    status = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server["grpc"])).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "abc"}), timeout=60)
    by_version = {s.version: s for s in status.model_version_status}
    assert by_version[2].state == get_model_status_pb2.ModelVersionStatus.END and by_version[2].status.error_message
    assert by_version[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE

    shutil.rmtree(broken)  # replaced by a good version 2: loaded (a changed folder is tried again)
    publish(server["source"], broken)
    wait_for(lambda: states(url, "abc") == {1: ("END", ""), 2: ("AVAILABLE", "")}, "the repaired version 2 loads")

    shutil.rmtree(broken)  # roll back by deleting the newest: version 1 serves again
    wait_for(lambda: states(url, "abc").get(1) == ("AVAILABLE", "") and states(url, "abc")[2][0] == "END",
             "version 1 serves again")
    assert served_version(url) == 1


def metric_samples(url):
    """``{(name, labels...): value}`` of the server's Prometheus text, read by Prometheus' own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/monitoring/prometheus/metrics", timeout=60) as response:
        text = response.read().decode()
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_prometheus_metrics_count_requests_latencies_and_loads(server):
    url, base = server["url"], server["base"]
    for _ in range(3):
        assert request(f"{url}/v1/models/abc:predict", {"instances": ["ab"]})[0] == 200
    assert request(f"{url}/v1/models/abc/versions/7:predict", {"instances": ["ab"]})[0] == 404
    for name in ("made-up-1", "made-up-2"):  # unknown names and versions share a series: no growth without bound
        assert request(f"{url}/v1/models/{name}:predict", {"instances": ["ab"]})[0] == 404
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server["grpc"]))
    for text in (["ab"], [1.0]):  # one answered, one INVALID_ARGUMENT
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "abc"
        req.inputs["text"].CopyFrom(tf.make_tensor_proto(text))
        try:
            stub.Predict(req, timeout=60)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "abc"
    model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server["grpc"])).GetModelStatus(status_request,
                                                                                                 timeout=60)
    publish(server["source"], base / "abc" / "2")
    wait_for(lambda: states(url, "abc").get(2) == ("AVAILABLE", ""), "version 2 loads")
    samples = metric_samples(url)

    def value(name, **labels):
        return samples.get((name, *sorted(labels.items())), 0)

    assert value("seqkit_serve_requests_total", model="abc", version="1", api="rest_predict", status="200") == 3
    assert value("seqkit_serve_requests_total", model="abc", version="", api="rest_predict", status="404") == 1
    assert value("seqkit_serve_requests_total", model="", version="", api="rest_predict", status="404") == 2
    assert not any("made-up" in str(key) for key in samples)
    assert value("seqkit_serve_request_latency_seconds_count", model="abc", version="1", api="rest_predict") == 3
    assert value("seqkit_serve_request_latency_seconds_sum", model="abc", version="1", api="rest_predict") > 0
    assert value("seqkit_serve_requests_total", model="abc", version="1", api="grpc_predict", status="OK") == 1
    assert value("seqkit_serve_requests_total", model="abc", version="", api="grpc_predict",
                 status="INVALID_ARGUMENT") == 1
    assert value("seqkit_serve_requests_total", model="abc", version="", api="grpc_status", status="OK") == 1
    assert value("seqkit_serve_model_events_total", model="abc", version="1", event="loaded") == 1
    assert value("seqkit_serve_model_events_total", model="abc", version="2", event="loaded") == 1
    assert value("seqkit_serve_model_events_total", model="abc", version="1", event="unloaded") == 1


@pytest.mark.parametrize("text, on_disk, served", [
    ("latest", [1, 2, 3], {3}), ("latest:2", [1, 2, 3], {2, 3}), ("all", [1, 2, 3], {1, 2, 3}),
    ("specific:1,3", [1, 2, 3], {1, 3}), ("specific:4", [1, 2, 3], set()),
])
def test_version_policies_select_as_tf_serving(text, on_disk, served):
    """Oracle: TF Serving's ServableVersionPolicy (latest N highest, all, specific listed)."""
    assert VersionPolicy(text).select(on_disk) == served


def test_bad_policy_and_poll_interval_are_one_line_errors(exported, tmp_path, capsys):
    base = exported.parent.parent
    assert_one_line_errors([
        (["serve", base, "--model-version-policy", "newest"], r"--model-version-policy 'newest' is not a policy"),
        (["serve", base, "--model-version-policy", "latest:0"], r"latest:N"),
        (["serve", base, "--model-version-policy", "specific:a"], r"specific:V,V"),
        (["serve", base, "--file_system_poll_wait_seconds", "-1"], r"file_system_poll_wait_seconds"),
    ], capsys, tmp_path / "never")


# -- tensorflow_model_server's command line: model config file, labels, config reload ------------------

CONFIG = """
model_config_list {{
  config {{
    name: "abc"
    base_path: "{abc}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "xyz" base_path: "{xyz}" }}
}}
"""


def start(args, url, name):
    process = subprocess.Popen([sys.executable, "-m", "seqkit.cli", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.time() + 180
    while True:
        try:
            if url is None or states(url, name):
                return process
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"seqkit did not start: {process.stdout.read()}")
        time.sleep(0.3)


def test_model_server_takes_a_model_config_file_with_labels_and_reloads_it(exported, tmp_path):
    """tensorflow_model_server's flags (--port is gRPC, --rest_api_port REST, --model_config_file) and its
    answers: labels name versions, an unknown label is INVALID_ARGUMENT ("Unrecognized servable version
    label"), HandleReloadConfigRequest replaces the models, policies and labels."""
    for v in (1, 2, 3):
        publish(exported, tmp_path / "abc" / str(v))
    publish(exported, tmp_path / "xyz" / "1")
    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(abc=tmp_path / "abc", xyz=tmp_path / "xyz"), encoding="utf-8")
    rest, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    process = start(["model-server", f"--port={grpc_port}", f"--rest_api_port={rest}", f"--model_config_file={config}",
                     "--file_system_poll_wait_seconds=0.2", "--host=127.0.0.1"], url, "xyz")
    try:
        wait_for(lambda: states(url, "abc") == {1: ("AVAILABLE", ""), 2: ("AVAILABLE", "")}, "abc 1 and 2 (specific)")
        for label, version in (("stable", 1), ("canary", 2)):
            status, body = request(f"{url}/v1/models/abc/labels/{label}/metadata")
            assert status == 200 and body["model_spec"]["version"] == str(version)
            status, body = request(f"{url}/v1/models/abc/labels/{label}:predict", {"instances": ["ab"]})
            assert status == 200
        status, body = request(f"{url}/v1/models/abc/labels/nope:predict", {"instances": ["ab"]})
        assert status == 400 and body["error"] == "Unrecognized servable version label: nope"

        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.version_label = "abc", "canary"
        req.inputs["text"].CopyFrom(tf.make_tensor_proto(["ab"]))
        assert stub.Predict(req, timeout=60).model_spec.version.value == 2
        req.model_spec.version_label = "nope"
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(req, timeout=60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        from google.protobuf import text_format
        from tensorflow_serving.apis import model_management_pb2
        from tensorflow_serving.config import model_server_config_pb2

        reload = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(f'model_config_list {{ config {{ name: "abc" base_path: "{tmp_path / "abc"}" '
                          'model_version_policy { latest { num_versions: 2 } } '
                          'version_labels { key: "stable" value: 3 } } }', reload.config)
        assert isinstance(reload.config, model_server_config_pb2.ModelServerConfig)
        answer = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(reload, timeout=120)
        assert answer.status.error_code == 0, answer.status.error_message
        assert {v: s for v, (s, _) in states(url, "abc").items()} == {1: "END", 2: "AVAILABLE", 3: "AVAILABLE"}
        assert request(f"{url}/v1/models/abc/labels/stable/metadata")[1]["model_spec"]["version"] == "3"
        assert request(f"{url}/v1/models/xyz:predict", {"instances": ["ab"]})[0] == 404  # dropped by the reload
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_model_config_file_is_reread_when_it_changes(exported, tmp_path):
    """--model_config_file_poll_wait_seconds: an edited file moves the labels; a broken one is
    reported and the last good config keeps serving (TF Serving's behaviour)."""
    for v in (1, 2):
        publish(exported, tmp_path / "abc" / str(v))
    publish(exported, tmp_path / "xyz" / "1")
    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(abc=tmp_path / "abc", xyz=tmp_path / "xyz"), encoding="utf-8")
    rest = free_port()
    url = f"http://127.0.0.1:{rest}"
    process = start(["model-server", f"--port={free_port()}", f"--rest_api_port={rest}",
                     f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=0.2",
                     "--host=127.0.0.1"], url, "xyz")

    def label(name):
        status, body = request(f"{url}/v1/models/abc/labels/{name}/metadata")
        return int(body["model_spec"]["version"]) if status == 200 else None

    lines = []  # the server's log, read as it is written
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    failed = "not reloaded, still serving the last good config: the new config is not a ModelServerConfig"
    try:
        wait_for(lambda: label("stable") == 1 and label("canary") == 2, "the labels of the first config")
        swapped = CONFIG.replace('value: 1 }', 'value: @ }').replace('value: 2 }', 'value: 1 }').replace('@', '2')
        config.write_text(swapped.format(abc=tmp_path / "abc", xyz=tmp_path / "xyz"), encoding="utf-8")
        wait_for(lambda: label("stable") == 2 and label("canary") == 1, "the labels of the edited config")
        config.write_text("model_config_list { config { name: ", encoding="utf-8")
        wait_for(lambda: any(failed in line for line in lines), "the broken config's report")
        assert label("stable") == 2 and request(f"{url}/v1/models/xyz:predict", {"instances": ["ab"]})[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=30)
    log = "".join(lines)
    assert failed in log
    assert "`" not in log  # the log is printed as written: no API argument in backticks


def test_model_server_with_a_model_base_path_serves_grpc_only_by_default(exported, tmp_path):
    publish(exported, tmp_path / "lm" / "4")
    grpc_port = free_port()
    process = start(["model-server", "--port", grpc_port, "--model_name", "lm", "--model_base_path", tmp_path / "lm",
                     "--host", "127.0.0.1"], None, None)
    try:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        deadline = time.time() + 120
        while True:
            try:
                status = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "lm"}),
                                             timeout=10)
                if status.model_version_status and status.model_version_status[0].state == \
                        get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                    break
            except grpc.RpcError:
                pass
            assert time.time() < deadline and process.poll() is None, process.stdout.read()
            time.sleep(0.3)
        assert [s.version for s in status.model_version_status] == [4]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_model_server_flags_are_one_line_errors(exported, tmp_path, capsys):
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'a' base_path: ", encoding="utf-8")
    assert_one_line_errors([
        (["model-server"], r"pass --model_base_path .* or --model_config_file"),
        (["model-server", "--model_base_path", exported.parent, "--rest_api_timeout_in_ms", "-1"],
         r"--rest_api_timeout_in_ms"),
        (["model-server", "--model_config_file", bad], r"--model_config_file is not a ModelServerConfig"),
        (["model-server", "--model_config_file", bad, "--model_base_path", exported.parent], r"pass one"),
        (["model-server", "--model_base_path", tmp_path / "nowhere"], r"--model_base_path .* is not a folder"),
        (["serve", "--model_name", "x"], r"--model_name needs --model_base_path"),
    ], capsys, tmp_path / "never")


def test_a_serve_error_names_the_argument_in_the_api_and_the_commands_flag_in_the_cli(tmp_path, capsys):
    """Oracle: the same errors both ways. serve() names its arguments (`port`, `grpc_port`); each
    command prints its own flag for them, and model-server's are TF Serving's: its REST port is
    --rest_api_port, its gRPC port --port (where seqkit serve's --port is REST)."""
    from seqkit.errors import SeqkitError
    from seqkit.serve import serve

    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(SeqkitError, match=r"^`port` and `grpc_port` are both 0: turn one API on$"):
        serve(model_base_path=models, port=0, grpc_port=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SeqkitError, match=rf"^cannot serve on 127.0.0.1:{port} \(.*\); pass another `port`$"):
            serve(model_base_path=models, port=port, grpc_port=0)
        assert_one_line_errors([
            (["model-server", "--model_base_path", models, "--port", 0, "--rest_api_port", 0],
             r"^error: --rest_api_port and --port are both 0: turn one API on$"),
            (["model-server", "--model_base_path", models, "--port", 0, "--rest_api_port", port, "--host", "127.0.0.1"],
             rf"^error: cannot serve on 127.0.0.1:{port} \(.*\); pass another --rest_api_port$"),
            (["model-server", "--model_base_path", models, "--port", port, "--host", "127.0.0.1"],
             rf"^error: cannot serve on 127.0.0.1:{port} \(.*\); pass another --port$"),
            (["serve", "--model_base_path", models, "--port", port, "--grpc-port", 0],
             rf"^error: cannot serve on 127.0.0.1:{port} \(.*\); pass another --port$"),
            (["serve", "--model_base_path", models, "--grpc-port", port, "--port", free_port()],
             rf"^error: cannot serve on 127.0.0.1:{port} \(.*\); pass another --grpc-port$"),
        ], capsys, tmp_path / "never")


def test_serve_errors_name_its_arguments_not_flags(tmp_path):
    """A Python caller of serve() reads the arguments it passed, in backticks, and no CLI flag; what a
    config file holds is named by the file. Each case fails before a port is bound or a model loaded."""
    from seqkit.errors import SeqkitError
    from seqkit.serve import serve

    monitoring = tmp_path / "monitoring.txt"
    monitoring.write_text('prometheus_config { enable: true path: "metrics" }', encoding="utf-8")
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'a' base_path: '/m' "
                      "model_version_policy { specific { versions: 0 } } } }", encoding="utf-8")
    cases = [
        ({"rest_api_timeout_in_ms": -1}, r"`rest_api_timeout_in_ms` must be >= 0 \(0: no limit\); got -1"),
        ({"max_concurrent": 0}, r"`max_concurrent` must be >= 1; got 0"),
        ({"model_config_file_poll_wait_seconds": 1},
         r"`model_config_file_poll_wait_seconds` needs `model_config_file`"),
        ({"policy": "newest"}, r"`policy` 'newest' is not a policy; pass latest, latest:N, all or specific:V,V"),
        ({"metrics": True, "metrics_path": "m"}, r"`metrics_path` must start with '/'; got 'm'"),
        ({"metrics": True, "port": 0}, r"`metrics` are served over REST: give `port` a port"),
        ({"batching_parameters_file": "b.txt"}, r"`batching_parameters_file` is set without `enable_batching`"),
        ({"model_name": "x"}, r"`model_name` needs `model_base_path`"),
        ({"model_base_path": tmp_path / "nowhere"}, r"`model_base_path` .*nowhere is not a folder"),
        ({"model_config_file": config, "model_name": "x"},
         r"`model_config_file` and `model_name`/`model_base_path` are two ways to say what to serve; pass one"),
        ({"model_config_file": tmp_path / "none"}, r"cannot read `model_config_file` .*none"),
        ({"model_config_file": config},
         r"`model_config_file`: model a: .* not usable \(specific needs one or more versions, each >= 1; got \[0\]\)"),
        ({"monitoring_config_file": monitoring},
         r"`monitoring_config_file` .*monitoring.txt: prometheus_config's path must start with '/'; got 'metrics'"),
    ]
    for arguments, message in cases:
        with pytest.raises(SeqkitError, match=message) as error:
            serve(**arguments)
        assert "--" not in str(error.value), str(error.value)


def test_every_argument_serve_errors_name_is_a_flag_of_the_command_that_runs():
    """Every `argument` in serve.py's errors is a parameter of serve(), and the CLI prints it as an option
    that `seqkit serve --help` lists; model-server lists all but the three it passes fixed values the
    library accepts (policy latest, no op allowlist, the default metrics path). Oracle: the click commands'
    own options, read from them."""
    import ast
    import inspect

    import seqkit.serve
    from seqkit import cli
    from seqkit.errors import ARGUMENT

    named = set()
    for node in ast.walk(ast.parse(inspect.getsource(seqkit.serve))):
        function = getattr(node, "func", None)
        if getattr(function, "id", None) == "SeqkitError":
            texts = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        elif getattr(function, "id", None) in ("check_port", "read_text_config"):  # ..., `{argument}`
            texts = [f"`{node.args[-1].value}`"]
        elif isinstance(node, ast.FunctionDef):  # read_model_config(where="`model_config_file`")
            texts = [d.value for d in node.args.defaults if isinstance(d, ast.Constant) and isinstance(d.value, str)]
        else:
            continue
        named |= {m.group(1) for text in texts for m in ARGUMENT.finditer(text)}
    assert {"port", "grpc_port", "policy", "max_concurrent", "model_config_file"} <= named
    assert named <= set(inspect.signature(seqkit.serve.serve).parameters)
    for command in ("serve", "model-server"):
        options = {o for p in cli.invoked([command]).params for o in getattr(p, "opts", [])}
        flags = cli.flags_of([command])
        missing = {a for a in named if flags.get(a, "--" + a.replace("_", "-")) not in options}
        assert missing == (set() if command == "serve" else {"policy", "op_allowlist", "metrics_path"}), command
    assert {a: cli.flags_of(["serve"])[a] for a in ("port", "grpc_port", "policy", "max_concurrent")} == {
        "port": "--port", "grpc_port": "--grpc-port", "policy": "--model-version-policy",
        "max_concurrent": "--max-concurrent-per-model"}
    assert {a: cli.flags_of(["model-server"])[a] for a in ("port", "grpc_port", "poll_seconds")} == {
        "port": "--rest_api_port", "grpc_port": "--port", "poll_seconds": "--file_system_poll_wait_seconds"}


# -- the op allowlist: SavedModels are programs -----------------------------------------------------------


def test_op_allowlist_loads_seqkits_exports_and_refuses_a_model_that_reads_files(exported, tmp_path):
    """A planted SavedModel whose signature reads a file (tf.io.read_file) and writes one (tf.io.write_file)
    is refused under --op-allowlist seqkit, naming the ops, before TensorFlow loads it (the file it would
    write never appears); seqkit's own export loads. Oracle: the ops of the planted graph."""
    from seqkit.serve import ModelRegistry, read_allowlist, saved_model_ops

    class Planted(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            tf.io.write_file(str(tmp_path / "written"), text[0])
            return {"out": tf.strings.join([text, tf.io.read_file("/etc/hostname")])}

    planted = Planted()
    base = tmp_path / "models"
    tf.saved_model.save(planted, str(base / "planted" / "1"), signatures={"serving_default": planted.serve})
    publish(exported, base / "abc" / "1")
    assert {"ReadFile", "WriteFile"} <= saved_model_ops(base / "planted" / "1")
    messages = []
    registry = ModelRegistry(base, allowed_ops=read_allowlist("seqkit"), log=messages.append)
    assert registry.status("abc")["model_version_status"][0]["state"] == "AVAILABLE"
    (entry,) = registry.status("planted")["model_version_status"]
    assert entry["state"] == "END" and "ops outside --op-allowlist: ReadFile, WriteFile" in entry["status"]["error_message"]
    assert not (tmp_path / "written").exists()
    trusting = ModelRegistry(base)  # without the list every folder is trusted: the planted model loads
    assert trusting.status("planted")["model_version_status"][0]["state"] == "AVAILABLE"


def test_the_allowlist_holds_the_ops_of_every_seqkit_export_here(exported):
    """Every op of the seqkit exports this file serves is on seqkit/allowed_ops.txt (scripts/allowed_ops.py
    writes it from one export per task form)."""
    from seqkit.serve import read_allowlist, saved_model_ops

    assert saved_model_ops(exported) <= read_allowlist("seqkit")
    assert {"ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "EagerPyFunc"}.isdisjoint(read_allowlist("seqkit"))


def test_the_allowlist_holds_the_ops_of_classifier_exports(tmp_path):
    """A text classifier on the text defaults (bidirectional, max pooling) and the adding problem's
    regressor, exported: their Classify / Regress signatures parse tf.Examples (ParseExampleV2), and the
    list lacked that op from the commit that added those signatures until scripts/allowed_ops.py ran again."""
    from seqkit.config import ClassifyConfig
    from seqkit.serve import read_allowlist, saved_model_ops
    from seqkit.tasks import classify

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "great fine film,pos\nbad dull film,neg\n" * 20, encoding="utf-8")
    small = {"units": 8, "embedding_dim": 4, "batch_size": 8, "steps": 2, "seed": 0}
    tasks = {"text": {"data": str(data)}, "adding": {"synthetic": "adding", "length": 6, "size": 64}}
    for name, options in tasks.items():
        run_dir = classify.train(ClassifyConfig(out=str(tmp_path / name), **options, **small), verbose=0)["run_dir"]
        ops = saved_model_ops(export.export(run_dir, out=tmp_path / "exported"))
        assert "ParseExampleV2" in ops and ops <= read_allowlist("seqkit"), ops - read_allowlist("seqkit")


# -- unloaded versions are freed ---------------------------------------------------------------------------


def test_an_unloaded_version_is_freed_once_its_requests_are_done(tmp_path):
    """A loaded SavedModel sits in reference cycles that only a full collection frees (rare in a
    server): the registry collects once an unloaded version is idle. Automatic collection is off
    here, so only the registry's can free it; oracle: a weak reference to the version."""
    import gc
    import weakref

    from seqkit.serve import ModelRegistry

    class Version:  # a stand-in servable in a reference cycle, as a loaded SavedModel is
        def __init__(self, name, version, path):
            self.name, self.version, self.signature_defs, self.active = name, version, {}, 0
            self.cycle = self

        def release(self):  # what a real version registered outside itself (see the next test)
            self.released = True

    (tmp_path / "lm" / "1").mkdir(parents=True)
    registry = ModelRegistry(tmp_path, loader=Version)
    first = weakref.ref(registry.get("lm"))
    gc.disable()
    try:
        first().active = 1  # a request is running on it
        (tmp_path / "lm" / "2").mkdir()
        registry.poll()  # 2 loaded, 1 unloaded (latest policy) but busy: kept
        assert registry.get("lm").version == 2 and first() is not None and first().released
        first().active = 0  # the request is done
        registry.poll()
        assert first() is None
    finally:
        gc.enable()


def test_a_loaded_savedmodel_leaves_nothing_behind_once_unloaded(exported, tmp_path):
    """``tf.saved_model.load`` registers the SavedModel's custom gradients in TensorFlow's global
    gradient registry and never removes them; they hold the loaded functions, so without
    ``Servable.release`` every version that ever came and went stayed in memory (+21 MiB each for
    a small char-LM; TF #40171). Oracles: weak references to each unloaded version's serving
    graph, and the registry back to its size with one version loaded."""
    import gc
    import weakref

    from seqkit import compat
    from seqkit.serve import ModelRegistry

    publish(exported, tmp_path / "abc" / "1")
    registry = ModelRegistry(tmp_path)
    size = len(compat.gradient_registry())
    graphs = []
    for version in (2, 3, 4):
        graphs.append(weakref.ref(registry.get("abc").model.signatures["serving_default"].graph))
        publish(exported, tmp_path / "abc" / str(version))
        registry.poll()
        assert registry.get("abc").version == version
    gc.collect()
    assert [graph() for graph in graphs] == [None] * 3
    assert len(compat.gradient_registry()) == size


def test_a_configured_base_path_that_is_missing_is_logged_once_and_served_once_it_appears(exported, tmp_path):
    """TF Serving keeps polling a configured base path that does not exist yet; so does seqkit,
    and says so once in its log (not at every poll), then serves the model once it appears."""
    from seqkit.serve import ModelRegistry, read_model_config

    lines = []
    config = 'model_config_list { config { name: "abc" base_path: "%s" } }' % (tmp_path / "abc")
    registry = ModelRegistry(log=lines.append, sources=read_model_config(config))
    registry.poll()
    registry.poll()
    missing = [line for line in lines if "base path" in line]
    assert len(missing) == 1 and str(tmp_path / "abc") in missing[0] and "polled again" in missing[0]
    publish(exported, tmp_path / "abc" / "1")
    registry.poll()
    assert registry.get("abc").version == 1
