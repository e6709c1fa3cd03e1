"""Task heads, one package each, and the registry that finds a run's task.

* ``char_lm/``: next-character language model (char-rnn);
* ``classify/``: sequence classification and regression, and the synthetic long-range tasks;
* ``seq2seq/``: encoder-decoder with attention, greedy / beam / sampled decoding.

Each holds ``data.py`` (reading and batching its data), ``model.py`` (the
Keras model), ``api.py`` (``train``, ``evaluate``, ``generate`` / ``predict``,
``load``: what the CLI calls) and ``export.py`` (its SavedModel signatures and
TFLite models), plus ``synthetic.py`` and ``scores.py`` where the task owns them.
A function several tasks' ``api.py`` have keeps one name and shape (``evaluate(path, data, ...)``,
``generate(path, ...)``), and an option they share one keyword, so a command that takes any
run finds its function by the run's task (``run_task``, ``task_function``) and passes it the
options it takes (``arguments``).
No task imports another: what they share lives outside ``tasks`` (``seqkit.text``,
``seqkit.training``, ``seqkit.decoding``, ``seqkit.plots``).
"""

import importlib
import inspect
import types

from seqkit.config import TASK_CHAR_LM, TASK_CLASSIFY, TASK_SEQ2SEQ
from seqkit.errors import SeqkitError, does_not_apply
from seqkit.training import rundir

_MISSING = object()
# config.json's task -> its package
PACKAGES = {TASK_CHAR_LM: "char_lm", TASK_CLASSIFY: "classify", TASK_SEQ2SEQ: "seq2seq"}


def task_module(task, part="api"):
    """The module ``part`` (``api``, ``export``, ...) of the task named ``task`` (a run's config.json ``task``).

    Raises:
        ValueError: ``task`` is not one of seqkit's tasks.
    """
    if task not in PACKAGES:
        raise ValueError(f"unknown task {task!r}; seqkit's tasks are {', '.join(PACKAGES)}")
    return importlib.import_module(f"{__name__}.{PACKAGES[task]}.{part}")


def run_task(path):
    """The task of the run at ``path`` (a run directory, or a ``.keras`` file inside one), as its
    config.json names it.

    Raises:
        SeqkitError: ``path`` is not a seqkit run, or its config.json is damaged.
    """
    return rundir.load_config(rundir.run_dir_of(path))["task"]


def task_function(task, name, path):
    """The API function ``name`` (``generate``, ``evaluate``) of ``task``, for the run at ``path``.

    Raises:
        ValueError: ``task`` is not one of seqkit's tasks.
        SeqkitError: ``task`` has no ``name`` (a classify run generates nothing); the message names
            the run ``path`` and the tasks that have one.
    """
    function = getattr(task_module(task), name, None)
    if function is None:
        able = [t for t in PACKAGES if hasattr(task_module(t), name)]
        raise SeqkitError(f"{rundir.run_dir_of(path)} is a {task} run, not a {' run or a '.join(able)} run; "
                          f"pass a {' or '.join(able)} run directory")
    return function


def arguments(function, task, options, given=()):
    """Those of ``options`` (``{argument: value}``, e.g. every option of a command that serves
    several tasks) that ``function``, ``task``'s API function, takes.

    Raises:
        SeqkitError: ``given`` (the options set on purpose) names one ``function`` does not take:
            it does not apply to a ``task`` run.
    """
    parameters = inspect.signature(function).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):  # **kwargs: takes every one
        return dict(options)
    misplaced = sorted(set(given) - set(parameters))
    if misplaced:
        raise does_not_apply(misplaced, f"a {task} run")
    return {name: value for name, value in options.items() if name in parameters}


def lazy_attributes(package, modules):
    """``(__getattr__, __dir__)`` for a task package: a name is looked up in ``modules``, in order,
    on first use (PEP 562), so ``seqkit.tasks.classify.train`` works without importing every part."""

    def __getattr__(name):
        if name in modules:  # ``from seqkit.tasks.classify import data``: the submodule itself
            return importlib.import_module(f"{package}.{name}")
        if name.startswith("__"):  # a probe (pickle, copy, inspect): not worth importing the parts
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module in modules:
            value = getattr(importlib.import_module(f"{package}.{module}"), name, _MISSING)
            if value is not _MISSING and own(value):
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def own(value):
        """Not a part's own import: no module, and no function or class defined outside the package
        (``classify.tokenize`` must not find the ``tokenize`` that classify's export imports)."""
        if isinstance(value, types.ModuleType):
            return False
        defined = (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__
        return not defined or defined.startswith(package + ".")

    def __dir__():
        return sorted({n for m in modules for n, value in vars(importlib.import_module(f"{package}.{m}")).items()
                       if not n.startswith("_") and own(value)})

    return __getattr__, __dir__
