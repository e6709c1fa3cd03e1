"""How ``seqkit serve`` runs model calls: deadlines, cancellation, a bound on concurrent
calls per model, and TF Serving's dynamic batching.

Every request runs under a ``Call``: its deadline (REST: ``--rest_api_timeout_in_ms``,
TF Serving's flag and default, 30 s; gRPC: the client's deadline, capped by the same
limit) and its cancellation (the deadline passing, or the client going away). The
model call runs under TensorFlow's ``CancellationManager``, so a cancelled call stops
inside its graph (generate's and beam search's loops included) instead of running to
the end for nobody.

A servable reaches its graph through a scheduler:

* ``Direct``: each request its own call, at most ``max_concurrent`` at once per model
  name; the others wait in order for a free slot, until their deadline.
* ``Batcher``: TF Serving's dynamic batching (``--enable_batching``, with
  ``--batching_parameters_file``'s ``BatchingParameters``): requests for one
  signature of one version are queued and concatenated along the batch axis; a
  batch is run when it holds ``max_batch_size`` rows or ``batch_timeout_micros``
  after its first request, by one of ``num_batch_threads`` threads. A request
  finding ``max_enqueued_batches`` batches waiting is refused (UNAVAILABLE), one
  larger than ``max_batch_size`` too (INVALID_ARGUMENT), with TF Serving's messages.
  Signatures whose answer for a row depends on the other rows of its batch
  (``UNBATCHED``: generate's seeded sampling draws by row position) run alone, and
  the per-request inputs (``PER_REQUEST_INPUTS``) merge only requests asking for the
  same values.

Errors are ``RequestError``s carrying TF Serving's HTTP status and gRPC code.
Source: TF Serving's ``batching/README.md`` and ``session_bundle_config.proto``
(``BatchingParameters``), its ``http_server.cc`` (status mapping).
"""

import collections
import heapq
import os
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import tensorflow as tf

from seqkit.compat import CancellationManager

UNBATCHED = frozenset({"generate"})  # signatures whose rows are not independent of their batch
PER_REQUEST_INPUTS = frozenset({"temperature", "top_k", "top_p", "seed", "beam_width", "max_length"})


class RequestError(Exception):
    """A request answered with an error: ``http_status`` (REST) and ``grpc_code`` (the name of a
    ``grpc.StatusCode``), mapped as TF Serving's ``http_server.cc`` maps its status codes."""

    http_status, grpc_code = 500, "INTERNAL"


class NotFound(RequestError):
    http_status, grpc_code = 404, "NOT_FOUND"


class BadRequest(RequestError):
    http_status, grpc_code = 400, "INVALID_ARGUMENT"


class TooLarge(BadRequest):
    http_status = 413


class Unavailable(RequestError):
    http_status, grpc_code = 503, "UNAVAILABLE"


class DeadlineExceeded(RequestError):
    http_status, grpc_code = 504, "DEADLINE_EXCEEDED"


class Cancelled(RequestError):
    http_status, grpc_code = 499, "CANCELLED"  # nginx's "client closed request", as TF Serving


class Call:
    """One request's deadline and cancellation.

    Args:
        timeout: seconds from now until the deadline; None: none.
        what: how the deadline was set, for the error message (e.g. the flag).
    """

    def __init__(self, timeout=None, what="--rest_api_timeout_in_ms"):
        self.timeout, self.what = timeout, what
        self.expires = None if timeout is None else time.monotonic() + timeout
        self.manager = CancellationManager()
        self.reason = None  # None, "deadline" or "cancelled"
        self.finished = False  # the model call has returned
        self._callbacks = []
        self._lock = threading.Lock()

    def remaining(self):
        """Seconds left until the deadline (None: no deadline)."""
        return None if self.expires is None else self.expires - time.monotonic()

    def cancel(self, reason="cancelled"):
        """Stop this request's work: its model call, and its wait for a slot or a batch."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason, callbacks = reason, list(self._callbacks)
        self.manager.start_cancel()
        for callback in callbacks:
            callback()

    def on_cancel(self, callback):
        with self._lock:
            if self.reason is None:
                self._callbacks.append(callback)
                return
        callback()

    def error(self):
        if self.reason == "deadline":
            return DeadlineExceeded(f"the request's deadline ({self.timeout:g} s, {self.what}) passed before it "
                                    "finished; ask for less, or allow more time")
        return Cancelled("the client cancelled the request")

    def check(self):
        """Raise the request's error once it is cancelled or past its deadline."""
        if self.reason is None and self.expires is not None and time.monotonic() >= self.expires:
            self.cancel("deadline")
        if self.reason is not None:
            raise self.error()

    def run(self, function, tensors):
        """``function(**tensors)`` (a concrete TF function), stopped when this call is cancelled
        or its deadline passes."""
        self.check()
        if self.expires is not None:
            WATCHDOG.watch(self)
        try:
            return self.manager.get_cancelable_function(function)(**tensors)
        except tf.errors.CancelledError:
            if self.reason is None:
                raise
            raise self.error() from None
        finally:
            self.finished = True


class Watchdog:
    """Cancels calls at their deadline: one thread and a heap of deadlines, cheaper per request
    than a timer thread each (a call that finishes first is dropped when its deadline comes)."""

    def __init__(self):
        self._heap, self._count = [], 0
        self._cond = threading.Condition()
        self._thread = None

    def watch(self, call):
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="seqkit-deadlines", daemon=True)
                self._thread.start()
            self._count += 1
            heapq.heappush(self._heap, (call.expires, self._count, call))
            if self._heap[0][2] is call:  # the earliest deadline changed: wake the thread
                self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                call = heapq.heappop(self._heap)[2]
            if not call.finished:
                call.cancel("deadline")


WATCHDOG = Watchdog()  # the process's deadline thread, started by the first call with a deadline


def numpy_outputs(outputs):
    return {key: value.numpy() for key, value in outputs.items()}


class Slots:
    """At most ``n`` holders at once, handed out first come, first served (a semaphore is not
    fair: a waiter could lose every race and wait out its deadline while later ones run)."""

    def __init__(self, n):
        self.free, self.waiters = n, collections.deque()
        self._lock = threading.Lock()

    def acquire(self, call):
        """Wait for a slot until ``call`` is cancelled or past its deadline (then its error)."""
        with self._lock:
            if self.free and not self.waiters:
                self.free -= 1
                return
            granted = threading.Event()
            self.waiters.append(granted)
        while not granted.wait(0.05):
            try:
                call.check()
            except RequestError:
                with self._lock:
                    if granted in self.waiters:
                        self.waiters.remove(granted)
                        raise
                self.release()  # handed a slot just now: pass it on
                raise

    def release(self):
        with self._lock:
            if self.waiters:
                self.waiters.popleft().set()  # the slot goes straight to the longest waiter
            else:
                self.free += 1


class Direct:
    """Each request its own model call; at most ``max_concurrent`` calls at once per model name
    (default: four per core, TF Serving's REST thread count; the rest wait in order, until their
    deadline or cancellation)."""

    def __init__(self, max_concurrent=None):
        self.max_concurrent = max_concurrent or 4 * (os.cpu_count() or 1)
        self._slots = {}
        self._lock = threading.Lock()

    def slots(self, model):
        with self._lock:
            return self._slots.setdefault(model, Slots(self.max_concurrent))

    def run(self, servable, signature_name, tensors, call):
        """``{output: ndarray}`` of ``servable``'s signature on ``tensors``."""
        slots = self.slots(servable.name)
        slots.acquire(call)
        try:
            return numpy_outputs(call.run(servable.model.signatures[signature_name], tensors))
        finally:
            slots.release()

    def close(self):
        pass


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's ``BatchingParameters`` (``session_bundle_config.proto``) with its defaults
    (``SharedBatchScheduler``'s: 1000 rows, no timeout, 10 queued batches, a thread per core)."""

    max_batch_size: int = 1000  # rows in a batch
    batch_timeout_micros: int = 0  # how long a batch waits for more rows after its first request
    max_enqueued_batches: int = 10  # batches a queue holds before refusing requests
    num_batch_threads: int = os.cpu_count() or 1  # threads running batches, shared by every model
    allowed_batch_sizes: tuple = ()  # batch sizes the model is called with (a batch is padded up to one)
    pad_variable_length_inputs: bool = False  # accepted; requests with other shapes batch apart instead

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0; got {self.batch_timeout_micros}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise ValueError(f"allowed_batch_sizes must increase and end at max_batch_size ({self.max_batch_size}); "
                             f"got {sizes}")

    @classmethod
    def from_text(cls, text):
        """Parse a ``BatchingParameters`` text proto (``--batching_parameters_file``)."""
        from google.protobuf import text_format

        message = tf_serving_message("BatchingParameters")()
        text_format.Parse(text, message)
        fields = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
            if message.HasField(name):
                fields[name] = getattr(message, name).value
        return cls(**fields, allowed_batch_sizes=tuple(message.allowed_batch_sizes),
                   pad_variable_length_inputs=message.pad_variable_length_inputs)


def tf_serving_message(name):
    """The class of one of TF Serving's config messages that the ``tensorflow-serving-api``
    package does not ship: ``BatchingParameters`` (``session_bundle_config.proto``) or
    ``MonitoringConfig`` (``monitoring_config.proto``), built from their field numbers."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        wrappers_pb2,
    )

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="seqkit_tf_serving_config.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])

    def message(message_name, fields):
        m = file.message_type.add(name=message_name)
        for field_name, number, kind, type_name, label in fields:
            m.field.add(name=field_name, number=number, type=kind, type_name=type_name, label=label)

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    int64 = (F.TYPE_MESSAGE, ".google.protobuf.Int64Value", one)
    message("BatchingParameters", [
        ("max_batch_size", 1, *int64), ("batch_timeout_micros", 2, *int64), ("max_enqueued_batches", 3, *int64),
        ("num_batch_threads", 4, *int64), ("thread_pool_name", 5, F.TYPE_MESSAGE, ".google.protobuf.StringValue", one),
        ("allowed_batch_sizes", 6, F.TYPE_INT64, None, many), ("pad_variable_length_inputs", 7, F.TYPE_BOOL, None, one),
    ])
    message("PrometheusConfig", [("enable", 1, F.TYPE_BOOL, None, one), ("path", 2, F.TYPE_STRING, None, one)])
    message("MonitoringConfig", [("prometheus_config", 1, F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig",
                                  one)])
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))


class Task:
    """One request waiting in a batch queue."""

    def __init__(self, tensors, rows, call):
        self.tensors, self.rows, self.call = tensors, rows, call
        self.future = futures.Future()


class Queue:
    """The batches waiting for one signature of one servable: each a list of tasks of at most
    ``max_batch_size`` rows, the last one open."""

    def __init__(self, key, servable, signature_name):
        self.key, self.servable, self.signature_name = key, servable, signature_name
        self.batches = []  # [[tasks], rows, opened at (monotonic s)]

    def add(self, task, max_batch_size):
        if not self.batches or self.batches[-1][1] + task.rows > max_batch_size:
            self.batches.append([[], 0, time.monotonic()])
        self.batches[-1][0].append(task)
        self.batches[-1][1] += task.rows

    def remove(self, task):
        for batch in self.batches:
            if task in batch[0]:
                batch[0].remove(task)
                batch[1] -= task.rows
        self.batches = [b for b in self.batches if b[0]]


class Batcher:
    """TF Serving's dynamic batching of Predict (and Classify / Regress) calls; see the module
    docstring. ``on_batch(model, rows)`` is told each batch's size (the metrics)."""

    def __init__(self, parameters=None, on_batch=lambda model, rows: None, max_concurrent=None):
        self.parameters = parameters or BatchingParameters()
        self.on_batch = on_batch
        self.direct = Direct(max_concurrent)  # the signatures that run alone
        self._queues = {}
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"seqkit-batch-{i}", daemon=True)
                         for i in range(self.parameters.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def run(self, servable, signature_name, tensors, call):
        """``{output: ndarray}`` of ``servable``'s signature on ``tensors``, computed in a batch with
        other requests' rows."""
        rows = {int(t.shape[0]) if t.shape.rank else None for t in tensors.values()}
        if signature_name in UNBATCHED or len(rows) != 1 or None in rows:
            return self.direct.run(servable, signature_name, tensors, call)
        (rows,) = rows
        limit = self.parameters.max_batch_size
        if rows > limit:
            raise BadRequest(f"Task size {rows} is larger than maximum batch size {limit}; split the request, or "
                             "raise max_batch_size in --batching_parameters_file")
        key = (id(servable), signature_name,
               tuple(sorted((k, t.dtype.name, tuple(t.shape[1:])) for k, t in tensors.items())),
               tuple(sorted((k, t.numpy().tobytes()) for k, t in tensors.items() if k in PER_REQUEST_INPUTS)))
        task = Task(tensors, rows, call)
        with self._cond:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = Queue(key, servable, signature_name)
            opens = not queue.batches or queue.batches[-1][1] + rows > limit
            if len(queue.batches) + opens > self.parameters.max_enqueued_batches:
                raise Unavailable("The batch scheduling queue to which this task was submitted is full; retry "
                                  "later, or raise max_enqueued_batches in --batching_parameters_file")
            queue.add(task, limit)
            self._cond.notify()
        while True:
            try:
                return task.future.result(timeout=0.05)
            except futures.TimeoutError:
                try:
                    call.check()
                except RequestError:
                    if task.future.cancel():  # still queued: withdraw it
                        with self._cond:
                            queue.remove(task)
                    raise

    def _ready(self, now):
        """The queue and batch to run next (the oldest closed or timed-out batch), or the seconds to
        wait until one may be ready."""
        best, wait = None, None
        timeout = self.parameters.batch_timeout_micros / 1e6
        for queue in self._queues.values():
            if not queue.batches:
                continue
            tasks, rows, opened = queue.batches[0]
            closed = len(queue.batches) > 1 or rows >= self.parameters.max_batch_size
            due = opened + timeout
            if closed or now >= due:
                if best is None or opened < best[0]:
                    best = (opened, queue)
            else:
                wait = due - now if wait is None else min(wait, due - now)
        if best is None:
            return None, wait
        queue = best[1]
        tasks = queue.batches.pop(0)[0]
        if not queue.batches:
            del self._queues[queue.key]
        return (queue, tasks), None

    def _work(self):
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    batch, wait = self._ready(time.monotonic())
                    if batch is not None:
                        break
                    self._cond.wait(wait)
            queue, tasks = batch
            tasks = [t for t in tasks if t.future.set_running_or_notify_cancel()]
            if tasks:
                self._execute(queue, tasks)

    def _execute(self, queue, tasks):
        """Run ``tasks`` as one call; a batch that fails is rerun a request at a time, so one bad
        request does not fail the others."""
        servable, name = queue.servable, queue.signature_name
        rows = sum(t.rows for t in tasks)
        size = next((s for s in self.parameters.allowed_batch_sizes if s >= rows), rows)
        batch_call = Call()
        live = [len(tasks)]

        def dropped():  # every request of the batch gone: stop the call
            live[0] -= 1
            if live[0] == 0:
                batch_call.cancel()

        for task in tasks:
            task.call.on_cancel(dropped)
        try:
            merged = {}
            for key in tasks[0].tensors:
                parts = [t.tensors[key] for t in tasks]
                if size > rows:  # pad as TF Serving does: copies of the first row
                    parts.append(tf.repeat(parts[0][:1], size - rows, axis=0))
                merged[key] = tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]
            outputs = numpy_outputs(batch_call.run(servable.model.signatures[name], merged))
            if any(v.ndim == 0 or v.shape[0] != size for v in outputs.values()):
                raise ValueError("an output has no batch dimension")
        except Exception as e:  # any failure of the batch is retried a request at a time, below
            if len(tasks) == 1 or isinstance(e, (RequestError, tf.errors.CancelledError)):
                for task in tasks:
                    task.future.set_exception(e)
                return
            for task in tasks:
                try:
                    task.future.set_result(numpy_outputs(task.call.run(servable.model.signatures[name],
                                                                       task.tensors)))
                except Exception as alone:  # this request's own error, handed to its caller
                    task.future.set_exception(alone)
            return
        self.on_batch(servable.name, rows)
        start = 0
        for task in tasks:
            task.future.set_result({k: v[start:start + task.rows] for k, v in outputs.items()})
            start += task.rows

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
