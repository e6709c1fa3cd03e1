"""``seqkit serve``: TensorFlow Serving's REST and gRPC APIs over exported models.

REST (Starlette on Uvicorn), the paths and bodies of TF Serving's API:

    GET  /v1/models/NAME[/versions/N]              version status
    GET  /v1/models/NAME[/versions/N]/metadata     signature defs
    POST /v1/models/NAME[/versions/N]:predict      {"signature_name": ..., "instances": [...]}
                                                   or {"signature_name": ..., "inputs": {...}}
    POST /v1/models/NAME[/versions/N]:classify     {"signature_name": ..., "examples": [{feature: value}]}
    POST /v1/models/NAME[/versions/N]:regress      (the same; /labels/LABEL for /versions/N everywhere)

gRPC: ``tensorflow.serving.PredictionService`` (``Predict``, ``Classify``,
``Regress``, ``MultiInference``, ``GetModelMetadata``) and ``ModelService``
(``GetModelStatus``, ``HandleReloadConfigRequest``), from the protos of the
``tensorflow-serving-api`` package, so TF Serving's own clients work
unchanged.

The base folder is polled (``--file_system_poll_wait_seconds``, 1 s as TF
Serving): versions and models that appear are loaded, versions the version
policy drops or whose folder is gone are unloaded (``ModelRegistry``);
requests without a version get the highest available. Model calls run in worker
threads (TensorFlow releases the GIL), so the event loop keeps accepting
requests while a long generation runs; ``scheduling`` bounds them per model,
batches them (``--enable_batching``) and stops them at their deadline or when
their client goes.
"""

import asyncio
import base64
import gc
import json
import threading
import time
import weakref
from concurrent import futures
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from seqkit import compat
from seqkit.errors import SeqkitError
from seqkit.scheduling import (  # noqa: F401 (the errors are serve's API too)
    BadRequest,
    Batcher,
    BatchingParameters,
    Call,
    Cancelled,
    DeadlineExceeded,
    Direct,
    NotFound,
    RequestError,
    TooLarge,
    Unavailable,
    tf_serving_message,
)

LENGTH_INPUTS = ("length", "max_length")  # inputs capped by --max-length
MAX_BEAM_WIDTH = 64  # beam_width inputs above this are refused
MAX_ROWS = 1024  # rows (batch entries) in one request


def read_signature_defs(path):
    """The SignatureDefs of the SavedModel at ``path`` (the 'serve' meta graph), internal ones left out."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    raise SeqkitError(f"{path} has no 'serve' meta graph; export it with seqkit export")


def saved_model_ops(path):
    """The op types of every node and function in ``path/saved_model.pb`` (read, not loaded)."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    functions = {f.signature.name for m in saved_model.meta_graphs for f in m.graph_def.library.function}
    return ops - functions  # a call of a library function by name is no op type


def read_allowlist(spec):
    """The op types of ``--op-allowlist``: ``seqkit`` (the ops of seqkit's own exports,
    ``seqkit/allowed_ops.txt``) or a file with one op type per line (``#`` comments)."""
    path = Path(__file__).parent / "allowed_ops.txt" if spec == "seqkit" else Path(spec)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SeqkitError(f"cannot read `op_allowlist` {spec}: {e}; pass seqkit or a file of op names") from e
    return frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


_LOADING = threading.Lock()  # one load at a time, so that the gradients a load registers are its own


class Servable:
    """One loaded version of a model. With ``allowed_ops``, a model holding any other op
    type is refused before TensorFlow loads it (``saved_model_ops``). Its graph is run by
    ``scheduler`` (``scheduling.Direct`` or ``scheduling.Batcher``)."""

    def __init__(self, name, version, path, max_length, allowed_ops=None, scheduler=None):
        self.name, self.version, self.path, self.max_length = name, version, Path(path), max_length
        self.scheduler = scheduler or Direct()
        self.active, self._active_lock = 0, threading.Lock()  # model calls running on this version
        self.signature_defs = read_signature_defs(path)
        if allowed_ops is not None:
            outside = sorted(saved_model_ops(path) - allowed_ops)
            if outside:
                raise PermissionError(f"{path} uses ops outside --op-allowlist: {', '.join(outside[:12])}"
                                      + (f" and {len(outside) - 12} more" if len(outside) > 12 else ""))
        with _LOADING:
            before = set(compat.gradient_registry())
            self.model = tf.saved_model.load(str(path))
            self._gradients = set(compat.gradient_registry()) - before

    def release(self):
        """Drop what loading registered outside the model, so that the version can be freed once
        its last request is done. ``tf.saved_model.load`` registers each custom gradient of the
        SavedModel (``CustomGradient-N``) in TensorFlow's global gradient registry and never removes
        it; those gradient functions hold the loaded functions, so every version ever loaded stayed
        in memory (+21 MiB a version for the test char-LM; TensorFlow issues #40171, #45453). A
        served model never takes gradients, so its entries can go as soon as it is unloaded."""
        registry = compat.gradient_registry()
        for name in self._gradients:
            registry.pop(name, None)
        self._gradients = set()

    def metadata_proto(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        return get_model_metadata_pb2.SignatureDefMap(signature_def=self.signature_defs)

    def metadata_json(self):
        signature_def = json_format.MessageToDict(self.metadata_proto(), preserving_proto_field_name=True)
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": signature_def}}

    def signature(self, name):
        name = name or "serving_default"
        if name not in self.signature_defs:
            raise BadRequest(f"Serving signature name: \"{name}\" not found in signature def; "
                             f"this model has {', '.join(sorted(self.signature_defs))}")
        return name, self.signature_defs[name]

    def call(self, signature_name, tensors, call=None):
        """``{output: ndarray}`` of a signature on ``tensors``, through the scheduler, under ``call``'s
        deadline and cancellation; TensorFlow's complaints about the inputs are BadRequests."""
        with self._active_lock:
            self.active += 1
        try:
            return self.scheduler.run(self, signature_name, tensors, call or Call())
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise BadRequest(first_message(e)) from e
        finally:
            with self._active_lock:
                self.active -= 1

    def predict(self, signature_name, inputs, call=None):
        """Run a signature on ``inputs`` (name -> nested lists or arrays) under ``call`` (a
        ``scheduling.Call``: deadline, cancellation); returns name -> ndarray."""
        name, signature = self.signature(signature_name)
        expected = signature.inputs
        missing = sorted(set(expected) - set(inputs))
        unknown = sorted(set(inputs) - set(expected))
        if missing or unknown:
            raise BadRequest(
                f"signature {name} takes inputs {', '.join(sorted(expected))}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        tensors = {key: to_tensor(key, value, expected[key]) for key, value in inputs.items()}
        rows = max((t.shape[0] for t in tensors.values() if t.shape.rank), default=0)
        if rows > MAX_ROWS:
            raise BadRequest(f"{rows} rows in one request exceed this server's limit of {MAX_ROWS}; split the batch")
        limits = {**{key: (self.max_length, "--max-length") for key in LENGTH_INPUTS},
                  "beam_width": (MAX_BEAM_WIDTH, None)}
        for key, (limit, flag) in limits.items():
            if key in tensors and tensors[key].dtype.is_integer and np.any(tensors[key].numpy() > limit):
                raise BadRequest(f"{key} exceeds this server's limit of {limit}; ask for less"
                                 + (f", or restart seqkit serve with a larger {flag}" if flag else ""))
        return self.call(name, tensors, call)


METHODS = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}


def infer(servable, method, signature_name, examples, call=None):
    """TF Serving's Classify / Regress on a servable: ``examples`` are serialized
    ``tf.Example`` protos; returns ``[[(label, score), ...], ...]`` (classify) or
    ``[value, ...]`` (regress), one per example. The signature must carry the
    method's name (``seqkit export`` gives classifiers ``classification`` and the
    adding problem ``regression``)."""
    name = signature_name or "serving_default"
    if name not in servable.signature_defs:
        raise BadRequest(f"Serving signature name: \"{name}\" not found in signature def; this model has "
                         f"{', '.join(sorted(servable.signature_defs))}")
    signature = servable.signature_defs[name]
    kind = "classification" if method == "classify" else "regression"
    if signature.method_name != METHODS[method]:
        raise BadRequest(f"Expected {kind} signature method_name to be {METHODS[method]}. Was: "
                         f"{signature.method_name}; pass the signature_name of one ({kind} in a seqkit export)")
    if not examples:
        raise BadRequest("Input is empty: send at least one example")
    if len(examples) > MAX_ROWS:
        raise BadRequest(f"{len(examples)} examples in one request exceed this server's limit of {MAX_ROWS}")
    outputs = servable.call(name, {"inputs": tf.constant(examples, tf.string)}, call)
    if method == "regress":
        return [float(v) for v in outputs["outputs"].reshape(-1)]
    scores = outputs["scores"]
    classes = outputs["classes"] if "classes" in outputs else np.full(scores.shape, b"", dtype=object)
    return [[(c.decode("utf-8", "replace"), float(v)) for c, v in zip(row_c, row_s)]
            for row_c, row_s in zip(classes, scores)]


def json_examples(body):
    """``(signature_name, [serialized tf.Example])`` from a TF Serving classify/regress JSON body:
    ``{"signature_name": ..., "context": {feature: value}, "examples": [{feature: value}, ...]}``;
    strings become bytes_list, integers int64_list, other numbers float_list, ``{"b64": ...}`` bytes."""
    request = read_json(body, "send {\"examples\": [{...}]}")
    if not isinstance(request, dict) or not isinstance(request.get("examples"), list):
        raise BadRequest("the body must be a JSON object with \"examples\": a list of objects of features")
    context = request.get("context", {})
    signature_name = request.get("signature_name")
    if not isinstance(context, dict) or (signature_name is not None and not isinstance(signature_name, str)):
        raise BadRequest("\"context\" must be an object of features and \"signature_name\" a string")
    if not all(isinstance(e, dict) for e in request["examples"]):
        raise BadRequest("every example must be a JSON object of features")
    return signature_name, [to_example({**context, **e}) for e in request["examples"]]


def to_example(features):
    """A serialized ``tf.Example`` of ``{name: value or [values]}``."""
    example = tf.train.Example()
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        feature = example.features.feature[key]
        if all(isinstance(v, str) or (isinstance(v, dict) and set(v) == {"b64"}) for v in values):
            feature.bytes_list.value.extend(strings(values))
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            if any(not -2**63 <= v < 2**63 for v in values):
                raise BadRequest(f"feature {key}: an integer beyond int64")
            feature.int64_list.value.extend(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            feature.float_list.value.extend(float(v) for v in values)
        else:
            raise BadRequest(f"feature {key} must hold strings or numbers, all of one kind")
    return example.SerializeToString()


def first_message(error):
    """The useful line of a TensorFlow error: an assertion's own message when there is one."""
    text = str(getattr(error, "message", None) or error)
    if "assertion failed: [" in text:  # "assertion failed: [MESSAGE] [Condition ...] ...": MESSAGE may hold "]"
        return text.split("assertion failed: [", 1)[1].split("] [", 1)[0].split("\n", 1)[0].rstrip("] ").strip()
    return " ".join(text.split())[:500]


def to_tensor(name, value, info):
    """``value`` as a tensor of the input's dtype, rank checked against the signature."""
    dtype = tf.dtypes.as_dtype(info.dtype)
    try:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        else:  # JSON: the values' own types must fit, as TF Serving checks (no "5" or 2.9 for an int)
            check_json_types(value, dtype)
        if dtype == tf.string:
            value = strings(value)
        array = np.asarray(value, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
        tensor = tf.constant(array, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"input {name} must hold {dtype.name} values of one shape: {e}") from e
    except RecursionError:
        raise BadRequest(f"input {name} is nested too deeply; it has rank {len(info.tensor_shape.dim)}") from None
    if not info.tensor_shape.unknown_rank:
        rank = len(info.tensor_shape.dim)
        if tensor.shape.rank != rank:
            raise BadRequest(f"input {name} must have rank {rank} (shape {shape_text(info)}); got shape "
                             f"{list(tensor.shape)}")
    return tensor


def from_tensor_proto(name, proto, info, max_elements):
    """A gRPC ``TensorProto`` as an array, checked before anything is materialised.

    The dtype must be the input's own (as TF Serving: an int64 or a float is
    not an int32), and the declared shape may hold at most ``max_elements``
    elements and ``MAX_ROWS`` rows: a proto may declare a huge shape with one
    value that ``tf.make_ndarray`` would repeat to fill it.
    """
    if info is None:  # an unknown input: predict names the expected ones
        return np.zeros(0)
    expected = tf.dtypes.as_dtype(info.dtype)
    if proto.dtype != info.dtype:
        got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "an unset dtype"
        raise BadRequest(f"input {name} must be {expected.name}; got {got}")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise BadRequest(f"input {name} must have a known shape; got {dims}")
    elements = int(np.prod(dims, dtype=np.float64)) if dims else 1
    if elements > max_elements:
        raise BadRequest(f"input {name} declares {elements:,} elements, over this server's limit of "
                         f"{max_elements:,}; send smaller batches")
    if dims and dims[0] > MAX_ROWS:
        raise BadRequest(f"{dims[0]} rows in one request exceed this server's limit of {MAX_ROWS}; split the batch")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as e:
        raise BadRequest(f"input {name} is not a well-formed {expected.name} tensor: {e}") from e


def check_json_types(value, dtype):
    """Raise TypeError where a JSON value does not fit ``dtype``: strings for numbers,
    numbers for strings, fractions for integers, booleans or nulls for numbers."""
    if isinstance(value, list):
        for v in value:
            check_json_types(v, dtype)
        return
    if dtype == tf.string:
        ok = isinstance(value, str) or (isinstance(value, dict) and set(value) == {"b64"})
    elif dtype == tf.bool:
        ok = isinstance(value, bool)
    elif dtype.is_integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise TypeError(f"{value!r} is not a {dtype.name} value")


def strings(value):
    """JSON strings (or TF Serving's ``{"b64": ...}`` objects) to bytes, at any nesting."""
    if isinstance(value, list):
        return [strings(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def shape_text(info):
    return "[" + ", ".join("None" if d.size < 0 else str(d.size) for d in info.tensor_shape.dim) + "]"


def to_json(array, name=""):
    """An output array as JSON values. Strings: ``{"b64": ...}`` when the output's name ends
    in ``_bytes`` (TF Serving's rule for binary outputs), else UTF-8 text (and ``{"b64": ...}``
    for a value that is not UTF-8, where TF Serving would write invalid JSON)."""
    if array.dtype == object:
        def text(b):
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(b).decode("ascii")}
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(b).decode("ascii")}

        return np.vectorize(text, otypes=[object])(array).tolist() if array.ndim else text(array.item())
    return array.tolist()


class VersionPolicy:
    """Which versions of a model to serve: TF Serving's ``ServableVersionPolicy``.

    ``latest`` / ``latest:N`` (the N highest; TF Serving's default is 1),
    ``all``, or ``specific:V[,V...]``.
    """

    def __init__(self, text="latest"):
        kind, _, arg = str(text).partition(":")
        self.text, self.kind, self.count, self.versions = text, kind, 1, set()
        try:
            if kind == "latest":
                self.count = int(arg) if arg else 1
                ok = self.count > 0
            elif kind == "specific":
                self.versions = {int(v) for v in arg.split(",")}
                ok = bool(self.versions) and min(self.versions) > 0
            else:
                ok = kind == "all" and not arg
        except ValueError:
            ok = False
        if not ok:
            raise SeqkitError(f"`policy` {text!r} is not a policy; pass latest, latest:N, all or specific:V,V "
                              "(positive integers)")

    def select(self, versions):
        """The versions to serve out of ``versions`` (on disk)."""
        if self.kind == "latest":
            return set(sorted(versions)[-self.count :])
        if self.kind == "specific":
            return self.versions & set(versions)
        return set(versions)


class ModelSource:
    """One model from TF Serving's model config: its folder of versions, policy and version labels."""

    def __init__(self, name, base_path, policy, labels=None):
        self.name, self.base_path, self.policy, self.labels = name, Path(base_path), policy, dict(labels or {})


def policy_from_proto(proto):
    """A ``VersionPolicy`` from a ``FileSystemStoragePathSourceConfig.ServableVersionPolicy`` (default: latest 1)."""
    kind = proto.WhichOneof("policy_choice")
    if kind == "all":
        return VersionPolicy("all")
    if kind == "specific":
        versions = list(proto.specific.versions)
        if not versions or min(versions) < 1:
            raise SeqkitError(f"specific needs one or more versions, each >= 1; got {versions}")
        return VersionPolicy("specific:" + ",".join(str(v) for v in versions))
    return VersionPolicy(f"latest:{proto.latest.num_versions or 1}" if kind == "latest" else "latest")


def read_model_config(config, where="`model_config_file`"):
    """``[ModelSource]`` of a ``ModelServerConfig``: its text format (TF Serving's
    ``--model_config_file``) or the proto itself (``HandleReloadConfigRequest``); its
    errors name it ``where``."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if isinstance(config, str):
        try:
            config = text_format.Parse(config, model_server_config_pb2.ModelServerConfig())
        except text_format.ParseError as e:
            raise SeqkitError(f"{where} is not a ModelServerConfig in text format: {e}; see TF Serving's "
                              "model_server_config.proto") from e
    if config.WhichOneof("config") != "model_config_list":
        raise SeqkitError(f"{where} needs a model_config_list {{ config {{ name: ... base_path: ... }} }}")
    sources = []
    for entry in config.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise SeqkitError(f"{where}: every config needs a name and a base_path; got {entry.name or 'no name'!r}")
        if entry.model_platform not in ("", "tensorflow"):
            raise SeqkitError(f"{where}: model {entry.name} has model_platform {entry.model_platform!r}; seqkit "
                              "serves tensorflow SavedModels")
        if any(entry.name == s.name for s in sources):
            raise SeqkitError(f"{where}: model {entry.name} is configured twice; give each config its own name")
        try:
            policy = policy_from_proto(entry.model_version_policy)
        except SeqkitError as e:
            raise SeqkitError(f"{where}: model {entry.name}: the model_version_policy is not usable ({e})") from e
        sources.append(ModelSource(entry.name, entry.base_path, policy, entry.version_labels))
    return sources


# TF Serving's ModelVersionStatus.State names; what status answers for a version this server has seen.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class ModelRegistry:
    """The models under ``base`` (``NAME/VERSION/`` SavedModels), kept in step with the folder.

    ``poll()`` scans ``base`` as TF Serving's file-system source does: each
    folder is a model, each numeric folder inside it a version (hidden
    folders, such as ``seqkit export``'s temporary ones, are skipped). The
    versions the policy selects are loaded; a loaded version the policy no
    longer selects, or whose folder is gone, is unloaded, but never the last
    available version of a model while its successor fails to load (the
    failure is in its status: state END with the load error). Requests see
    a consistent set: the tables are swapped whole, and a request already
    running on an unloaded version finishes on it. ``start_polling`` polls
    every ``interval`` seconds in a daemon thread.
    """

    def __init__(self, base=None, max_length=2000, policy="latest", log=lambda message: None, loader=None,
                 on_event=lambda name, version, event: None, sources=None, allowed_ops=None, scheduler=None):
        self.base = None if base is None else Path(base)
        self.on_event = on_event  # (name, version, "loaded" | "load_failed" | "unloaded")
        self.sources = None if sources is None else {s.name: s for s in sources}  # None: every folder of base
        if self.sources is None and not self.base.is_dir():
            raise SeqkitError(f"model folder {self.base} does not exist; export a model with seqkit export RUN_DIR "
                              "or pass the folder that holds NAME/VERSION/")
        self.max_length, self.log = max_length, log
        self.policy = policy if isinstance(policy, VersionPolicy) else VersionPolicy(policy)
        self.loader = loader or (lambda name, version, path: Servable(name, version, path, max_length, allowed_ops,
                                                                      scheduler))
        self.models = {}  # name -> {version: Servable}: what requests see (replaced, never changed in place)
        self.states = {}  # name -> {version: (state, error message)}
        self.failed = {}  # (name, version) -> the saved_model.pb stamp that failed to load (retried when it changes)
        self._missing = set()  # configured base paths found missing, each logged once until it appears
        self._unloaded = []  # (weak reference, collections tried) of unloaded versions not yet freed
        self._lock = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self.poll()
        if not self.states and self.sources is None:
            raise SeqkitError(f"no models under {self.base} (expected NAME/VERSION/saved_model.pb); export one with "
                              "seqkit export RUN_DIR")

    def reload_config(self, sources):
        """Serve the models of a new model config (``HandleReloadConfigRequest``): models it drops are
        unloaded, new ones loaded, policies and labels replaced; returns when the poll is done."""
        with self._lock:
            self.sources = {s.name: s for s in sources}
        self.poll()

    def policy_of(self, name):
        return self.sources[name].policy if self.sources is not None else self.policy

    def scan(self):
        """``{name: {version: path}}`` of the version folders on disk."""
        found = {}
        if self.sources is not None:
            model_dirs = {name: source.base_path for name, source in self.sources.items()}
        else:
            try:
                model_dirs = {p.name: p for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")}
            except OSError:
                return found
        for model_name, model_dir in model_dirs.items():
            found[model_name] = {}
            try:
                found[model_name] = {int(p.name): p for p in model_dir.iterdir()
                                     if p.is_dir() and p.name.isdigit() and int(p.name) > 0}
                self._missing.discard(model_dir)
            except OSError as e:  # a configured base path that does not exist (yet): no versions, said once
                if model_dir not in self._missing:
                    self._missing.add(model_dir)
                    self.log(f"model {model_name}: its base path {model_dir} cannot be read ({e.strerror or e}); "
                             "no versions to serve until it can (polled again)")
        return found

    @staticmethod
    def stamp(path):
        try:
            info = (path / "saved_model.pb").stat()
            return info.st_mtime_ns, info.st_size
        except OSError:
            return None

    def poll(self):
        """Load and unload versions to match the folder and the policy; returns the names that changed."""
        with self._lock:
            found, changed = self.scan(), set()
            models = {name: dict(versions) for name, versions in self.models.items()}
            states = {name: dict(versions) for name, versions in self.states.items()}
            for name in sorted(set(found) | set(models)):
                on_disk = found.get(name, {})
                wanted = self.policy_of(name).select(on_disk) if name in found else set()
                loaded = models.setdefault(name, {})
                status = states.setdefault(name, {})
                for version in sorted(wanted - set(loaded)):
                    path, stamp = on_disk[version], self.stamp(on_disk[version])
                    if self.failed.get((name, version), False) == stamp:
                        continue  # failed before, unchanged since
                    status[version] = (LOADING, "")
                    try:
                        loaded[version] = self.loader(name, version, path)
                    except Exception as e:  # a damaged or foreign folder: this version fails, the others serve
                        self.failed[(name, version)] = stamp
                        message = str(e) if isinstance(e, OSError) else first_message(e)
                        status[version] = (END, f"{type(e).__name__}: {message}")
                        self.log(f"failed to load {name} version {version}: {message}")
                        self.on_event(name, version, "load_failed")
                        continue
                    self.failed.pop((name, version), None)
                    status[version] = (AVAILABLE, "")
                    changed.add(name)
                    self.log(f"loaded {name} version {version} (signatures: "
                             f"{', '.join(sorted(loaded[version].signature_defs))})")
                    self.on_event(name, version, "loaded")
                keep_old = not (wanted & set(loaded))  # nothing wanted is available: keep serving what is
                for version in sorted(loaded):
                    gone = version not in on_disk
                    if gone or (version not in wanted and not keep_old):
                        servable = loaded.pop(version)
                        servable.release()
                        self._unloaded.append((weakref.ref(servable), 0))  # freed after its requests
                        del servable
                        status[version] = (END, "")
                        changed.add(name)
                        self.log(f"unloaded {name} version {version}" + (" (its folder is gone)" if gone else ""))
                        self.on_event(name, version, "unloaded")
                if not loaded:
                    del models[name]
            self.models, self.states = models, states
        self.free_unloaded()
        return changed

    def free_unloaded(self):
        """Free the unloaded versions once no request runs on them. A loaded SavedModel sits in
        reference cycles, which Python frees only at a full collection, rare in a server: without
        this (and ``Servable.release``), each version that comes and goes keeps ~30 MiB. A full collection takes 0.2-0.8 s of
        the interpreter, so it runs only when an unloaded version is idle, at most 3 times for it."""
        pending = [(ref, tries) for ref, tries in self._unloaded if ref() is not None and tries < 3]
        idle = {id(ref) for ref, _ in pending if getattr(ref(), "active", 0) == 0}
        if idle:
            gc.collect()
        self._unloaded = [(ref, tries + (id(ref) in idle)) for ref, tries in pending if ref() is not None]

    def start_polling(self, interval):
        """Poll every ``interval`` seconds in a daemon thread (``interval <= 0``: never)."""
        if interval <= 0:
            return None

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception as e:  # a poll that fails is logged and retried at the next interval
                    self.log(f"polling {self.base} failed: {type(e).__name__}: {e}")

        thread = threading.Thread(target=loop, name="seqkit-serve-poll", daemon=True)
        thread.start()
        return thread

    def watch_config(self, path, interval):
        """Re-read the model config file ``path`` every ``interval`` seconds and serve what it says
        when it changes (TF Serving's ``--model_config_file_poll_wait_seconds``); a file that does
        not parse is logged and the models served stay as they are."""
        if interval <= 0:
            return None
        seen = [Path(path).read_text(encoding="utf-8")]

        def loop():
            while not self._stop.wait(interval):
                try:
                    text = Path(path).read_text(encoding="utf-8")
                    if text != seen[0]:
                        seen[0] = text
                        self.reload_config(read_model_config(text, where="the new config"))
                        self.log(f"reloaded the model config {path}")
                except (OSError, UnicodeDecodeError, SeqkitError) as e:
                    self.log(f"the model config {path} was not reloaded, still serving the last good config: {e}")

        thread = threading.Thread(target=loop, name="seqkit-serve-config", daemon=True)
        thread.start()
        return thread

    def stop_polling(self):
        self._stop.set()

    def known(self, name):
        """``name`` if this server has seen the model, else "": a metrics label, so that requests
        for made-up names cannot grow the number of series without bound."""
        return name if name in self.states else ""

    def version_for_label(self, name, label):
        """The version a label names in the model config (TF Serving's ``version_labels``)."""
        sources = self.sources or {}
        if name not in sources or label not in sources[name].labels:
            raise BadRequest(f"Unrecognized servable version label: {label}")
        return sources[name].labels[label]

    def get(self, name, version=None, label=None):
        if label is not None:
            version = self.version_for_label(name, label)
        models = self.models
        if name not in models:
            raise NotFound(f"Servable not found for request: Latest({name}); served models: "
                           f"{', '.join(sorted(models)) or 'none'}")
        versions = models[name]
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(f"Servable not found for request: Specific({name}, {version}); available versions: "
                           f"{', '.join(map(str, sorted(versions)))}")
        return versions[version]

    def status(self, name, version=None, label=None):
        """TF Serving's GetModelStatus answer: every version this server has seen, or one."""
        if label is not None:
            version = self.version_for_label(name, label)
        states = self.states.get(name)
        if not states:
            raise NotFound(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise NotFound(f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        return {"model_version_status": [
            {"version": str(v), "state": state,
             "status": {"error_code": "UNKNOWN" if error else "OK", "error_message": error}}
            for v, (state, error) in sorted(states.items())]}


class Metrics:
    """Prometheus metrics of a server (``prometheus-client``), served as text on ``--metrics``.

    * ``seqkit_serve_requests_total{model, version, api, status}``: requests answered
      (``model`` "" for a name the server has never seen, ``version`` "" unless a served version answered)
      (``api``: rest_predict, rest_classify, rest_regress, rest_metadata, rest_status, grpc_predict,
      grpc_classify, grpc_regress, grpc_multi_inference, grpc_metadata; ``status``: the
      HTTP status, or the gRPC code's name);
    * ``seqkit_serve_request_latency_seconds{model, version, api}``: their latency;
    * ``seqkit_serve_model_events_total{model, version, event}``: loaded, load_failed, unloaded;
    * ``seqkit_serve_batch_size{model}`` (with ``--enable_batching``): rows per batch run.

    The names are seqkit's own; TF Serving's (``:tensorflow:serving:request_count``, ...)
    carry other labels.
    """

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("seqkit_serve_requests", "Requests answered", ["model", "version", "api", "status"],
                                registry=self.registry)
        self.latency = Histogram("seqkit_serve_request_latency_seconds", "Request latency",
                                 ["model", "version", "api"], registry=self.registry)
        self.events = Counter("seqkit_serve_model_events", "Version loads, failed loads and unloads",
                              ["model", "version", "event"], registry=self.registry)
        self.batch_size = Histogram("seqkit_serve_batch_size", "Rows per batch run (--enable_batching)", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)

    def observe(self, model, version, api, status, seconds):
        version = "" if version is None else str(version)
        self.requests.labels(model, version, api, str(status)).inc()
        self.latency.labels(model, version, api).observe(seconds)

    def batch(self, model, rows):
        self.batch_size.labels(model).observe(rows)

    def event(self, model, version, event):
        self.events.labels(model, str(version), event).inc()

    def text(self):
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# -- REST ------------------------------------------------------------------------------


def read_json(body, fix):
    """A request body's JSON, or a BadRequest naming the problem and ``fix``."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"JSON Parse error: {e} (the body is not valid JSON); {fix}") from None  # TF Serving's first words
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deeply; inputs have at most a few dimensions") from None


def parse_predict_body(body, servable):
    """``(signature_name, inputs, row_format)`` from a TF Serving predict request body."""
    request = read_json(body, "send {\"instances\": [...]} or {\"inputs\": ...}")
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object with \"instances\" or \"inputs\"")
    if ("instances" in request) == ("inputs" in request):
        raise BadRequest("the body needs exactly one of \"instances\" (row format) or \"inputs\" (columnar format)")
    signature_name = request.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise BadRequest("signature_name must be a string")
    name, signature = servable.signature(signature_name)
    input_names = list(signature.inputs)
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest("\"instances\" must be a non-empty list")
        if all(isinstance(i, dict) and "b64" not in i for i in instances):
            keys = {frozenset(i) for i in instances}
            if len(keys) != 1:
                raise BadRequest("every instance must have the same input names")
            inputs = {k: [i[k] for i in instances] for k in instances[0]}
        elif len(input_names) == 1:
            inputs = {input_names[0]: instances}
        else:
            raise BadRequest(f"signature {name} has inputs {', '.join(sorted(input_names))}: each instance must "
                             "be an object naming them")
        return name, inputs, True
    inputs = request["inputs"]
    if not (isinstance(inputs, dict) and inputs and "b64" not in inputs):
        if len(input_names) != 1:
            raise BadRequest(f"signature {name} has inputs {', '.join(sorted(input_names))}: \"inputs\" must be "
                             "an object naming them")
        inputs = {input_names[0]: inputs}
    return name, inputs, False


def predict_response(outputs, row_format):
    if row_format:
        names = sorted(outputs)
        firsts = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
        if None in firsts.values() or len(set(firsts.values())) != 1:
            raise BadRequest(f"the outputs do not share a batch dimension ({firsts}), so they have no row format; "
                             "send \"inputs\" (columnar) instead of \"instances\"")
        columns = {k: to_json(v, k) for k, v in outputs.items()}
        rows = next(iter(firsts.values()))
        if len(names) == 1:
            return {"predictions": columns[names[0]]}
        return {"predictions": [{k: columns[k][i] for k in names} for i in range(rows)]}
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"outputs": to_json(value, name)}
    return {"outputs": {k: to_json(v, k) for k, v in outputs.items()}}


def make_app(registry, max_body_bytes=10 << 20, metrics=None, metrics_path="/monitoring/prometheus/metrics",
             timeout=30.0):
    """The Starlette application of the REST API (and, with ``metrics``, its Prometheus text at ``metrics_path``).
    A model call gets ``timeout`` seconds (None: no limit) and is cancelled when its client disconnects."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class Response(JSONResponse):
        def render(self, content):  # NaN and Infinity as TF Serving writes them, not a 500
            return json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode("utf-8")

    def error(status, message):
        return Response({"error": message}, status_code=status)

    def version_of(request):
        v = request.path_params.get("version")
        return None if v is None else int(v)

    def target(request):
        """``(name, version, label)`` of a request's path."""
        return request.path_params["name"], version_of(request), request.path_params.get("label")

    async def read_body(request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise TooLarge(f"request body of {declared} bytes exceeds the limit of {max_body_bytes}; send "
                             "smaller batches, or restart seqkit serve with a larger --max-body-bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise TooLarge(f"request body exceeds the limit of {max_body_bytes} bytes; send smaller batches")
            chunks.append(chunk)
        return b"".join(chunks)

    def handle(endpoint):
        async def answer(request):
            try:
                return await endpoint(request)
            except RequestError as e:
                return error(e.http_status, str(e))
            except Exception as e:  # a bug of ours: still an answer in the API's shape, and the server lives on
                return error(500, f"internal error: {type(e).__name__}: {e}")

        async def wrapped(request):
            started = time.perf_counter()
            response = await answer(request)
            if metrics is not None:
                version = getattr(request.state, "version", None)  # a served version, or "": bounded labels
                metrics.observe(registry.known(request.path_params.get("name", "")), version,
                                f"rest_{endpoint.__name__}", response.status_code, time.perf_counter() - started)
            return response

        return wrapped

    async def run_call(request, function, *args):
        """``function(*args, call)`` in a worker thread, under a ``Call`` cancelled at the deadline or
        when the client disconnects (the ASGI server then sends ``http.disconnect``)."""
        call = Call(timeout)

        async def disconnected():
            while (await request.receive())["type"] != "http.disconnect":
                pass

        work = asyncio.ensure_future(run_in_threadpool(function, *args, call))
        gone = asyncio.ensure_future(disconnected())
        done, _ = await asyncio.wait({work, gone}, timeout=call.remaining(), return_when=asyncio.FIRST_COMPLETED)
        if work not in done:
            call.cancel("cancelled" if gone in done else "deadline")
        gone.cancel()
        return await work

    async def status(request):
        return Response(registry.status(*target(request)))

    async def metadata(request):
        servable = registry.get(*target(request))
        request.state.version = servable.version
        return Response(servable.metadata_json())

    async def predict(request):
        servable = registry.get(*target(request))
        request.state.version = servable.version
        body = await read_body(request)
        signature_name, inputs, row_format = parse_predict_body(body, servable)
        outputs = await run_call(request, servable.predict, signature_name, inputs)
        return Response(predict_response(outputs, row_format))

    async def classify(request):
        return await inference(request, "classify")

    async def regress(request):
        return await inference(request, "regress")

    async def inference(request, method):
        servable = registry.get(*target(request))
        request.state.version = servable.version
        signature_name, examples = json_examples(await read_body(request))
        results = await run_call(request, infer, servable, method, signature_name, examples)
        return Response({"results": [[list(pair) for pair in row] for row in results] if method == "classify"
                         else results})

    async def post_only(request):
        return error(405, f"{request.url.path} takes POST with a JSON body, not {request.method}")

    async def unknown(request):
        return error(404, f"no such endpoint: {request.method} {request.url.path}; see TF Serving's REST API "
                          "(/v1/models/NAME[/versions/N][/metadata|:predict])")

    async def prometheus(request):
        from prometheus_client import CONTENT_TYPE_LATEST
        from starlette.responses import Response as Plain

        return Plain(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    routes = [Route(metrics_path, prometheus, methods=["GET"])] if metrics is not None else []
    routes += [
        Route("/v1/models/{name}/versions/{version:int}:predict", post_only, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/models/{name}/labels/{label}:predict", post_only, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/models/{name}:predict", post_only, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/models/{name}/versions/{version:int}:predict", handle(predict), methods=["POST"]),
        Route("/v1/models/{name}/labels/{label}:predict", handle(predict), methods=["POST"]),
        Route("/v1/models/{name}:predict", handle(predict), methods=["POST"]),
        *[Route(f"/v1/models/{{name}}{at}:{method}", handle(endpoint), methods=["POST"])
          for at in ("/versions/{version:int}", "/labels/{label}", "")
          for method, endpoint in (("classify", classify), ("regress", regress))],
        Route("/v1/models/{name}/versions/{version:int}/metadata", handle(metadata), methods=["GET"]),
        Route("/v1/models/{name}/labels/{label}/metadata", handle(metadata), methods=["GET"]),
        Route("/v1/models/{name}/metadata", handle(metadata), methods=["GET"]),
        Route("/v1/models/{name}/versions/{version:int}", handle(status), methods=["GET"]),
        Route("/v1/models/{name}/labels/{label}", handle(status), methods=["GET"]),
        Route("/v1/models/{name}", handle(status), methods=["GET"]),
        Route("/{path:path}", unknown, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
    return Starlette(routes=routes)


# -- gRPC ------------------------------------------------------------------------------


def make_grpc_server(registry, address, workers=8, max_body_bytes=10 << 20, metrics=None, timeout=30.0,
                     access_log=None):
    """A grpc.Server with TF Serving's PredictionService and ModelService on ``address``. A model
    call ends at the client's deadline or after ``timeout`` seconds (None: no limit), whichever
    comes first, and stops when the client cancels. ``access_log``: called with a line per request."""
    import grpc
    from tensorflow.core.protobuf import error_codes_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_management_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    def proto_examples(input_proto):
        """Serialized ``tf.Example``s of a ``tensorflow.serving.Input`` (a list, or a list with a context
        merged into each, as TF Serving does)."""
        kind = input_proto.WhichOneof("kind")
        if kind == "example_list":
            return [e.SerializeToString() for e in input_proto.example_list.examples]
        if kind == "example_list_with_context":  # the context's bytes, then the example's: a feature in both
            context = input_proto.example_list_with_context.context.SerializeToString()  # reads as the example's
            return [context + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
        return []

    def fill_result(result, method, results):
        for row in results:
            if method == "classify":
                item = result.classifications.add()
                for label, score in row:
                    item.classes.add(label=label, score=score)
            else:
                result.regressions.add(value=row)

    def choice(spec):
        """``(name, version, label)`` of a ModelSpec (its version_choice: a version, a label, or neither)."""
        which = spec.WhichOneof("version_choice")
        return (spec.name, spec.version.value if which == "version" else None,
                spec.version_label if which == "version_label" else None)

    def abort(context, e):
        context.abort(getattr(grpc.StatusCode, e.grpc_code), str(e))

    def servable_for(spec, context):
        try:
            return registry.get(*choice(spec))
        except RequestError as e:
            abort(context, e)

    def call_for(context):
        """A ``Call`` ending at the client's deadline or the server's limit, cancelled with the RPC."""
        remaining = context.time_remaining()
        limits = [t for t in (remaining, timeout) if t is not None]
        call = Call(min(limits) if limits else None,
                    "the client's deadline" if remaining is not None and (timeout is None or remaining <= timeout)
                    else "--rest_api_timeout_in_ms")
        def ended():  # the RPC is over: done, past the client's deadline, or cancelled by the client
            # A client stops at its deadline, which is earlier than the one gRPC gives the server (that clock
            # starts when the request arrives, late on a loaded machine): a cancel in the last quarter of
            # the time (at least 0.1 s) is the deadline, an earlier one the client's own.
            left = context.time_remaining()
            at_deadline = left is not None and left <= max(0.1, 0.25 * remaining)
            call.cancel("deadline" if at_deadline else "cancelled")

        context.add_callback(ended)
        return call

    def observed(api):
        """Count and time a method's requests in ``metrics`` as ``api``, and write a line of
        ``access_log`` for each."""
        def decorate(method):
            def wrapped(self, request, context):
                if metrics is None and access_log is None:
                    return method(self, request, context)
                started, code, version = time.perf_counter(), "OK", None
                try:
                    response = method(self, request, context)
                    spec = (response.results[0].model_spec if api == "grpc_multi_inference"
                            else getattr(response, "model_spec", None))  # a status reply has none
                    version = spec.version.value if spec is not None and spec.HasField("version") else None
                    return response
                except Exception:
                    code = context.code().name if context.code() is not None else "UNKNOWN"
                    raise
                finally:
                    specs = ([t.model_spec for t in request.tasks] if api == "grpc_multi_inference"
                             else [request.model_spec])
                    name, seconds = (specs[0].name if specs else ""), time.perf_counter() - started
                    if metrics is not None:
                        metrics.observe(registry.known(name), version, api, code, seconds)
                    if access_log is not None:
                        access_log(f'{context.peer()} - "gRPC {type(request).__name__} {name[:100]!r}" {code} '
                                   f'{1000 * seconds:.1f} ms')
            return wrapped
        return decorate

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        @observed("grpc_predict")
        def Predict(self, request, context):
            servable = servable_for(request.model_spec, context)
            try:
                name, signature = servable.signature(request.model_spec.signature_name)
                inputs = {k: from_tensor_proto(k, v, signature.inputs.get(k), max_body_bytes)
                          for k, v in request.inputs.items()}
                unknown = sorted(set(request.output_filter) - set(signature.outputs))
                if unknown:
                    raise BadRequest(f"output_filter names {', '.join(unknown)}, not outputs of signature {name} "
                                     f"({', '.join(sorted(signature.outputs))})")
                outputs = servable.predict(name, inputs, call_for(context))
                if request.output_filter:
                    outputs = {k: v for k, v in outputs.items() if k in set(request.output_filter)}
            except RequestError as e:
                abort(context, e)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = name
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

        @observed("grpc_classify")
        def Classify(self, request, context):
            return self.infer(request, context, "classify")

        @observed("grpc_regress")
        def Regress(self, request, context):
            return self.infer(request, context, "regress")

        def infer(self, request, context, method):
            servable = servable_for(request.model_spec, context)
            try:
                results = infer(servable, method, request.model_spec.signature_name, proto_examples(request.input),
                                call_for(context))
            except RequestError as e:
                abort(context, e)
            response = (classification_pb2.ClassificationResponse() if method == "classify"
                        else regression_pb2.RegressionResponse())
            fill_result(response.result, method, results)
            response.model_spec.name, response.model_spec.version.value = servable.name, servable.version
            response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
            return response

        @observed("grpc_multi_inference")
        def MultiInference(self, request, context):
            """Several Classify / Regress tasks of one model over one input (TF Serving's rules:
            one model, each signature once)."""
            response = inference_pb2.MultiInferenceResponse()
            if not request.tasks:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Empty task list")
            names = {t.model_spec.name for t in request.tasks}
            signatures = [t.model_spec.signature_name or "serving_default" for t in request.tasks]
            if len(names) != 1:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must "
                                                                "access the same model name")
            if len(set(signatures)) != len(signatures):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature")
            examples, call = proto_examples(request.input), call_for(context)
            for task in request.tasks:
                method = {v: k for k, v in METHODS.items()}.get(task.method_name)
                if method is None:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Unsupported signature method_name: "
                                                                    f"{task.method_name}")
                servable = servable_for(task.model_spec, context)
                try:
                    results = infer(servable, method, task.model_spec.signature_name, examples, call)
                except RequestError as e:
                    abort(context, e)
                result = response.results.add()
                result.model_spec.name, result.model_spec.version.value = servable.name, servable.version
                result.model_spec.signature_name = task.model_spec.signature_name or "serving_default"
                fill_result(result.classification_result if method == "classify" else result.regression_result,
                            method, results)
            return response

        @observed("grpc_metadata")
        def GetModelMetadata(self, request, context):
            servable = servable_for(request.model_spec, context)
            if list(request.metadata_field) != ["signature_def"]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "metadata_field must be [\"signature_def\"]")
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(servable.metadata_proto())
            return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        @observed("grpc_status")
        def GetModelStatus(self, request, context):
            try:
                status = registry.status(*choice(request.model_spec))
            except RequestError as e:
                abort(context, e)
            response = get_model_status_pb2.GetModelStatusResponse()
            for entry in status["model_version_status"]:
                item = response.model_version_status.add()
                item.version = int(entry["version"])
                item.state = get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"])
                if entry["status"]["error_message"]:
                    item.status.error_code = error_codes_pb2.UNKNOWN
                    item.status.error_message = entry["status"]["error_message"]
            return response

        def HandleReloadConfigRequest(self, request, context):
            """Serve the models of ``request.config`` instead (TF Serving's config reload)."""
            response = model_management_pb2.ReloadConfigResponse()
            try:
                registry.reload_config(read_model_config(request.config, where="the ReloadConfigRequest"))
            except SeqkitError as e:
                response.status.error_code = error_codes_pb2.INVALID_ARGUMENT
                response.status.error_message = str(e)
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", max_body_bytes)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(), server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.60 raises where older versions returned 0
        bound = 0
    if bound == 0:
        raise SeqkitError(f"cannot bind gRPC to {address} (in use?); pass another `grpc_port` (0 turns gRPC off)")
    return server


def address(host, port):
    """``host:port``, with an IPv6 host in brackets (``[::1]:8500``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port(host, port, argument):
    """Fail early, in one line, when ``host:port`` cannot be bound (in use, or not an address here);
    the error says to pass another ``argument`` (``"port"`` or ``"grpc_port"``)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise SeqkitError(f"cannot serve on {address(host, port)} ({e.strerror}); pass another `{argument}`") from e


def model_sources(model_config_file, model_name, model_base_path, policy):
    """The models to serve: those of ``model_config_file``, or the one at ``model_base_path`` (named
    ``model_name``), or None for every folder of the base folder."""
    if model_config_file and (model_name or model_base_path):
        raise SeqkitError("`model_config_file` and `model_name`/`model_base_path` are two ways to say what to serve; "
                          "pass one")
    if model_config_file:
        return read_model_config(read_text_config(model_config_file, "model_config_file"))
    if model_base_path:
        if not Path(model_base_path).is_dir():
            raise SeqkitError(f"`model_base_path` {model_base_path} is not a folder; pass the folder that holds the "
                              "numeric version folders (e.g. saved_models/NAME)")
        return [ModelSource(model_name or "default", model_base_path, policy)]  # TF Serving's default name
    if model_name:
        raise SeqkitError("`model_name` needs `model_base_path`, the folder of that model's versions")
    return None


def read_text_config(path, argument):
    """The text of the config file ``path``, passed as ``argument`` (named in the error)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SeqkitError(f"cannot read `{argument}` {path}: {e}") from e


def read_batching_parameters(enable_batching, path):
    """``BatchingParameters`` for ``--enable_batching`` (from ``--batching_parameters_file``, a text
    proto, or TF Serving's defaults), or None when batching is off."""
    from google.protobuf import text_format

    if not enable_batching:
        if path:
            raise SeqkitError("`batching_parameters_file` is set without `enable_batching`; add `enable_batching`")
        return None
    if not path:
        return BatchingParameters()
    try:
        return BatchingParameters.from_text(read_text_config(path, "batching_parameters_file"))
    except (text_format.ParseError, ValueError) as e:
        raise SeqkitError(f"`batching_parameters_file` {path}: {e}; write BatchingParameters in text format, e.g. "
                          "max_batch_size { value: 32 } batch_timeout_micros { value: 1000 }") from e


def read_monitoring_config(path, metrics, metrics_path):
    """``(metrics, metrics_path)`` after TF Serving's ``--monitoring_config_file`` (a ``MonitoringConfig``
    text proto: ``prometheus_config { enable: true path: "..." }``)."""
    from google.protobuf import text_format

    config = tf_serving_message("MonitoringConfig")()
    try:
        text_format.Parse(read_text_config(path, "monitoring_config_file"), config)
    except text_format.ParseError as e:
        raise SeqkitError(f"`monitoring_config_file` {path}: {e}; write a MonitoringConfig in text format, e.g. "
                          "prometheus_config { enable: true }") from e
    prometheus = config.prometheus_config
    if prometheus.path and not prometheus.path.startswith("/"):
        raise SeqkitError(f"`monitoring_config_file` {path}: prometheus_config's path must start with '/'; got "
                          f"{prometheus.path!r}")
    return metrics or prometheus.enable, prometheus.path or metrics_path


def serve(base="saved_models", host="127.0.0.1", port=8501, grpc_port=8500, max_body_bytes=10 << 20,
          max_length=2000, policy="latest", poll_seconds=1.0, metrics=False,
          metrics_path="/monitoring/prometheus/metrics", model_config_file=None, model_name=None,
          model_base_path=None, op_allowlist=None, enable_batching=False, batching_parameters_file=None,
          rest_api_timeout_in_ms=30000, max_concurrent=None, monitoring_config_file=None,
          model_config_file_poll_wait_seconds=0, access_log=False, log=print):
    """Serve models until interrupted, with TF Serving's REST API on ``port`` and its gRPC
    API on ``grpc_port`` (0 turns either off, not both).

    What to serve: every model folder under ``base``, or, as ``tensorflow_model_server``,
    the models of ``model_config_file`` (a ``ModelServerConfig`` in text format: names,
    base paths, version policies, version labels) or the one ``model_base_path`` (named
    ``model_name``). The folders are polled every ``poll_seconds`` (TF Serving's
    ``--file_system_poll_wait_seconds``; 0: only at start) for versions that come and go;
    ``policy`` (``VersionPolicy``) applies where the config gives none.
    ``op_allowlist``: ``"seqkit"`` or a file of op types (``read_allowlist``); a model
    holding another op is refused at load (its status says which ops).

    Model calls: each gets ``rest_api_timeout_in_ms`` (0: no limit; gRPC: or the client's
    deadline, if sooner) and is stopped when its client goes; at most ``max_concurrent``
    (default: four per core) run at once per model. ``enable_batching`` batches them as
    TF Serving does, with the ``BatchingParameters`` of ``batching_parameters_file``
    (``scheduling.Batcher``). ``monitoring_config_file``: TF Serving's ``MonitoringConfig``
    (text format), the other way to turn on ``metrics`` and set ``metrics_path``.
    ``model_config_file_poll_wait_seconds``: re-read ``model_config_file`` this often (0:
    only at start, TF Serving's default) and serve what it says when it changes.
    ``access_log``: a line per request (REST: Uvicorn's access log; gRPC: peer, method, model,
    code, milliseconds).

    Errors name these arguments (`` `port` and `grpc_port` are both 0``); the CLI prints
    them as its flags (``seqkit model-server``: ``--rest_api_port and --port``).
    """
    if monitoring_config_file:
        metrics, metrics_path = read_monitoring_config(monitoring_config_file, metrics, metrics_path)
    batching = read_batching_parameters(enable_batching, batching_parameters_file)
    if rest_api_timeout_in_ms < 0:
        raise SeqkitError(f"`rest_api_timeout_in_ms` must be >= 0 (0: no limit); got {rest_api_timeout_in_ms}")
    if model_config_file_poll_wait_seconds < 0:
        raise SeqkitError("`model_config_file_poll_wait_seconds` must be >= 0 (0: read the file only at start)")
    if model_config_file_poll_wait_seconds and not model_config_file:
        raise SeqkitError("`model_config_file_poll_wait_seconds` needs `model_config_file`, the file to re-read")
    if max_concurrent is not None and max_concurrent < 1:
        raise SeqkitError(f"`max_concurrent` must be >= 1; got {max_concurrent}")
    timeout = rest_api_timeout_in_ms / 1000 or None
    policy = VersionPolicy(policy)
    sources = model_sources(model_config_file, model_name, model_base_path, policy)
    if not port and not grpc_port:
        raise SeqkitError("`port` and `grpc_port` are both 0: turn one API on")
    if metrics and not metrics_path.startswith("/"):
        raise SeqkitError(f"`metrics_path` must start with '/'; got {metrics_path!r}")
    if metrics and not port:
        raise SeqkitError("`metrics` are served over REST: give `port` a port")
    metrics = Metrics() if metrics else None
    if port:
        check_port(host, port, "port")
    if grpc_port:
        check_port(host, grpc_port, "grpc_port")
    allowed_ops = read_allowlist(op_allowlist) if op_allowlist else None
    scheduler = (Batcher(batching, metrics.batch if metrics else lambda *args: None, max_concurrent)
                 if batching else Direct(max_concurrent))
    registry = ModelRegistry(None if sources is not None else base, max_length=max_length, policy=policy, log=log,
                             on_event=metrics.event if metrics else lambda *args: None, sources=sources,
                             allowed_ops=allowed_ops, scheduler=scheduler)
    grpc_server = None
    if grpc_port:
        grpc_server = make_grpc_server(registry, address(host, grpc_port), max_body_bytes=max_body_bytes,
                                       metrics=metrics, timeout=timeout, access_log=log if access_log else None)
        grpc_server.start()
    registry.start_polling(poll_seconds)
    if model_config_file:
        registry.watch_config(model_config_file, model_config_file_poll_wait_seconds)
    apis = ([f"REST on http://{address(host, port)}/v1/models/NAME"] if port else []) + (
        [f"gRPC on {address(host, grpc_port)}"] if grpc_port else [])
    log(", ".join(apis) + (f"; polling {'the configured base paths' if sources is not None else base} every "
                           f"{poll_seconds:g} s" if poll_seconds > 0 else ""))
    if metrics:
        log(f"Prometheus metrics on http://{address(host, port)}{metrics_path}")
    if batching:
        log(f"batching: up to {batching.max_batch_size} rows, {batching.batch_timeout_micros} us timeout, "
            f"{batching.num_batch_threads} threads")
    try:
        if not port:  # gRPC only (tensorflow_model_server's default: --rest_api_port 0)
            try:
                grpc_server.wait_for_termination()
            except KeyboardInterrupt:
                pass
            return
        import uvicorn

        config = uvicorn.Config(make_app(registry, max_body_bytes, metrics, metrics_path, timeout), host=host, port=port,
                                log_level="info" if access_log else "warning", access_log=access_log)
        try:
            asyncio.run(uvicorn.Server(config).serve())
        except SystemExit as e:  # uvicorn exits when it cannot start (e.g. the port was taken meanwhile)
            raise SeqkitError(f"cannot serve REST on {address(host, port)} (in use?); pass another `port`") from e
    finally:
        registry.stop_polling()
        if grpc_server is not None:
            grpc_server.stop(grace=1)
        scheduler.close()
