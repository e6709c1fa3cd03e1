"""Task heads, one package each, and the registry that finds a run's task.

* ``char_lm/``: next-character language model (char-rnn);
* ``classify/``: sequence classification and regression, and the synthetic long-range tasks;
* ``seq2seq/``: encoder-decoder with attention, greedy / beam / sampled decoding.

Each holds ``data.py`` (reading and batching its data), ``model.py`` (the
Keras model), ``api.py`` (``train``, ``evaluate``, ``generate`` / ``predict``,
``load``: what the CLI calls) and ``export.py`` (its SavedModel signatures and
TFLite models), plus ``synthetic.py`` and ``scores.py`` where the task owns them.
No task imports another: what they share lives outside ``tasks`` (``seqkit.text``,
``seqkit.training``, ``seqkit.decoding``, ``seqkit.plots``).
"""

import importlib
import types

from seqkit.config import TASK_CHAR_LM, TASK_CLASSIFY, TASK_SEQ2SEQ

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
            if value is not _MISSING and not isinstance(value, types.ModuleType):  # not a part's own imports
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted({n for m in modules for n in dir(importlib.import_module(f"{package}.{m}"))
                       if not n.startswith("_")})

    return __getattr__, __dir__
