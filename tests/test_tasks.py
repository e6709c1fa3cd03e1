"""The task registry (``seqkit.tasks``): a run's task, its API function, the options that function takes.

Oracle: known answers: the task a config.json names, the task packages' own functions, and the
arguments of their signatures as written in ``api.py``.
"""

import json

import pytest

from seqkit import tasks
from seqkit.errors import SeqkitError
from seqkit.tasks.char_lm import api as char_lm_api
from seqkit.tasks.classify import api as classify_api
from seqkit.tasks.seq2seq import api as seq2seq_api

# every option of `seqkit generate`, at its CLI default
GENERATE_OPTIONS = {"prime": None, "length": 500, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": None,
                    "num_samples": 1, "xla": False, "inputs": (), "decode": "greedy", "beam_width": 5,
                    "length_penalty": 1.0, "max_length": None, "n_best": 1, "unknown": "error"}


def fake_run(folder, task):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"task": task}), encoding="utf-8")
    return folder


def test_run_task_reads_the_task_of_a_run_or_of_a_keras_file_inside_one(tmp_path):
    run = fake_run(tmp_path / "run", "seq2seq")
    assert tasks.run_task(run) == "seq2seq"
    assert tasks.run_task(run / "model.keras") == "seq2seq"
    assert tasks.run_task(run / "checkpoints" / "ckpt-3.keras") == "seq2seq"
    with pytest.raises(SeqkitError, match=r"nowhere is not a directory"):
        tasks.run_task(tmp_path / "nowhere")


def test_task_function_is_the_task_api_function():
    assert tasks.task_function("char-lm", "generate", "run") is char_lm_api.generate
    assert tasks.task_function("seq2seq", "generate", "run") is seq2seq_api.generate
    assert tasks.task_function("classify", "evaluate", "run") is classify_api.evaluate


def test_task_function_names_the_tasks_that_have_it():
    with pytest.raises(SeqkitError, match=r"^runs/x is a classify run, not a char-lm run or a seq2seq run; pass a "
                                          r"char-lm or seq2seq run directory$"):
        tasks.task_function("classify", "generate", "runs/x/model.keras")
    with pytest.raises(ValueError, match=r"unknown task 'translate'"):
        tasks.task_function("translate", "generate", "runs/x")


def test_arguments_keeps_the_options_the_function_takes():
    assert tasks.arguments(char_lm_api.generate, "char-lm", GENERATE_OPTIONS) == {
        "prime": None, "length": 500, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": None, "num_samples": 1,
        "xla": False}
    assert tasks.arguments(seq2seq_api.generate, "seq2seq", GENERATE_OPTIONS, given={"inputs", "temperature"}) == {
        "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": None, "inputs": (), "decode": "greedy",
        "beam_width": 5, "length_penalty": 1.0, "max_length": None, "n_best": 1, "unknown": "error"}


def test_arguments_refuses_a_given_option_the_function_does_not_take():
    with pytest.raises(SeqkitError, match=r"^`beam_width` does not apply to a char-lm run; drop it$"):
        tasks.arguments(char_lm_api.generate, "char-lm", GENERATE_OPTIONS, given={"beam_width", "length"})
    with pytest.raises(SeqkitError, match=r"^`num_samples`, `prime` do not apply to a seq2seq run; drop them$"):
        tasks.arguments(seq2seq_api.generate, "seq2seq", GENERATE_OPTIONS, given={"prime", "num_samples", "seed"})


def test_arguments_gives_a_function_with_keyword_arguments_every_option():
    def generate(path, **options):
        return options

    assert tasks.arguments(generate, "char-lm", GENERATE_OPTIONS, given={"beam_width"}) == GENERATE_OPTIONS


@pytest.mark.parametrize("task", ["char_lm", "classify", "seq2seq"])
def test_a_task_package_finds_its_own_names_and_none_its_parts_imported(task):
    """``seqkit.tasks.classify.tokenize`` once found the ``tokenize`` classify's export imports from
    ``seqkit.text``: a different function, silently. Known answers: every function or class a part
    defines is found; what the parts import from outside the package is not."""
    import importlib
    import inspect

    package = importlib.import_module(f"seqkit.tasks.{task}")
    parts = [importlib.import_module(f"{package.__name__}.{part}") for part in ("api", "data", "model", "export")]
    defined, imported = {}, set()
    for part in parts:
        for name, value in vars(part).items():
            if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value)):
                own = value.__module__.startswith(package.__name__ + ".")
                defined.update({name: value} if own else {})
                imported |= set() if own else {name}
    for name, value in defined.items():
        assert getattr(package, name) is value and name in dir(package), name
    for name in imported - set(defined):
        with pytest.raises(AttributeError):
            getattr(package, name)
        assert name not in dir(package)
    assert len(defined) > 5 and len(imported - set(defined)) > 5
