"""Every command against bad input, as a user runs it.

For each case: a non-zero exit, exactly one line on stderr that starts with
``error:`` and says what is wrong (and, by the message, what to do), no
traceback, and not one file of the workspace changed, added or left
half-written (a hash of every file, hidden ones included, before and after).
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from seqkit import export
from seqkit.cli import main
from seqkit.config import CharLMConfig, ClassifyConfig, Seq2SeqConfig
from seqkit.tasks import char_lm, classify, seq2seq

TEXT = "a quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace: input files of every kind, a trained run, damaged copies of it, an export."""
    root = tmp_path_factory.mktemp("workspace")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "short.txt").write_text("too short", encoding="utf-8")
    (root / "no_text").mkdir()
    (root / "no_text" / "data.csv").write_text("1,2\n", encoding="utf-8")
    (root / "a_file").write_text("not a folder", encoding="utf-8")
    (root / "bad.toml").write_text("units = 8\nhidden_size = 3\n", encoding="utf-8")
    config = CharLMConfig(data=[str(root / "corpus.txt")], units=8, layers=1, embedding_dim=4, seq_len=16,
                          batch_size=4, epochs=1, steps_per_epoch=3, seed=0, out=str(root / "run"))
    run = Path(char_lm.train(config, verbose=0)["run_dir"])
    for name, damage in (("no_vocab", lambda d: (d / "vocab.json").unlink()),
                         ("truncated", lambda d: (d / "model.keras").write_bytes(
                             (d / "model.keras").read_bytes()[:300])),
                         ("classify_run", lambda d: (d / "config.json").write_text(
                             json.dumps({**json.loads((d / "config.json").read_text()), "task": "classify"})))):
        shutil.copytree(run, root / name)
        damage(root / name)
    export.export(run, name="model", out=root / "saved_models")
    (root / "reviews.csv").write_text("text,label\n" + "good fine film,pos\nbad dull film,neg\n" * 20,
                                      encoding="utf-8")
    (root / "unseen.csv").write_text("text,label\ngood film,meh\n", encoding="utf-8")
    (root / "columns.tsv").write_text("review\tsentiment\ngood\tpos\nbad\tneg\n", encoding="utf-8")
    (root / "ragged.csv").write_text("text,label\ngood,pos,extra\nbad,neg\n", encoding="utf-8")
    (root / "one_class.csv").write_text("text,label\ngood,pos\nfine,pos\n", encoding="utf-8")
    (root / "blank_line.txt").write_text("good film\n\nbad film\n", encoding="utf-8")
    (root / "no_tab.tsv").write_text("abc\tcba\nabd dba\n", encoding="utf-8")
    (root / "empty_side.tsv").write_text("abc\tcba\nabd\t\n", encoding="utf-8")
    classify.train(ClassifyConfig(data=str(root / "reviews.csv"), tokens="word", units=8, embedding_dim=8,
                                  epochs=1, steps_per_epoch=2, seed=0, out=str(root / "classify")), verbose=0)
    seq2seq.train(Seq2SeqConfig(synthetic="reverse", length=4, size=200, units=8, embedding_dim=8, epochs=1,
                                seed=0, out=str(root / "seq2seq")), verbose=0)
    (root / "empty_models").mkdir()
    return root


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


RUN, NEW = "{ws}/run", "{ws}/new_run"
TRAIN = ["train", "char-lm", "--out", NEW]
CASES = [
    # train char-lm: data
    ("missing file", [*TRAIN, "--data", "{ws}/missing.txt"], r"missing.txt does not exist"),
    ("directory without text", [*TRAIN, "--data", "{ws}/no_text"], r"no files matching '\*\*/\*.txt'"),
    ("empty file", [*TRAIN, "--data", "{ws}/empty.txt"], r"is empty"),
    ("non-UTF-8 bytes", [*TRAIN, "--data", "{ws}/latin1.txt"], r"not valid UTF-8: byte 0xe9 at offset 3"),
    ("corpus shorter than one window", [*TRAIN, "--data", "{ws}/short.txt"], r"fewer than one batch"),
    # train char-lm: options
    ("zero units", [*TRAIN, "--data", "{ws}/corpus.txt", "--units", "0"], r"--units must be a positive integer"),
    ("zero batch size", [*TRAIN, "--data", "{ws}/corpus.txt", "--batch-size", "0"],
     r"--batch-size must be a positive integer"),
    ("negative sequence length", [*TRAIN, "--data", "{ws}/corpus.txt", "--seq-len", "-5"],
     r"--seq-len must be a positive integer"),
    ("negative learning rate", [*TRAIN, "--data", "{ws}/corpus.txt", "--lr", "-1"], r"--lr must be > 0"),
    ("unknown cell name", [*TRAIN, "--cell", "transformer"], r"Invalid value for '--cell': 'transformer'"),
    ("unknown option", [*TRAIN, "--hidden", "5"], r"No such option '--hidden'; see 'seqkit train char-lm --help'"),
    ("unknown keys in a TOML config", [*TRAIN, "--config", "{ws}/bad.toml"], r"unknown keys hidden_size"),
    ("run directory exists", ["train", "char-lm", "--data", "{ws}/corpus.txt", "--out", RUN],
     r"already exists and is not empty; pass --resume"),
    ("resume of nothing", [*TRAIN, "--resume"], r"cannot resume: .* is not a seqkit run directory"),
    ("output under a file", ["train", "char-lm", "--data", "{ws}/corpus.txt", "--out", "{ws}/a_file/run"],
     r"cannot create run directory"),
    ("multiworker without TF_CONFIG", [*TRAIN, "--data", "{ws}/corpus.txt", "--batch-size", "4", "--seq-len", "16",
                                       "--strategy", "multiworker"],
     r"TF_CONFIG"),
    # generate
    ("unknown characters at generation", ["generate", RUN, "--prime", "ZEBRA"], r"not in the model's vocabulary"),
    ("zero length", ["generate", RUN, "--length", "0"], r"--length must be a positive integer"),
    ("negative temperature", ["generate", RUN, "--temperature", "-0.1"], r"--temperature must be >= 0"),
    ("top-p zero", ["generate", RUN, "--top-p", "0"], r"--top-p must be in \(0, 1\]"),
    ("top-p above one", ["generate", RUN, "--top-p", "1.5"], r"--top-p must be in \(0, 1\]"),
    ("negative top-k", ["generate", RUN, "--top-k", "-3"], r"--top-k must be >= 0"),
    ("run of another task", ["generate", "{ws}/classify_run"], r"is a classify run, not a char-lm run"),
    ("missing vocabulary", ["generate", "{ws}/no_vocab"], r"vocabulary file .* is missing"),
    ("truncated weights file", ["generate", "{ws}/truncated"], r"cannot load model weights from .* damaged"),
    ("not a run directory", ["generate", "{ws}/no_text"], r"is not a seqkit run directory \(no config.json\)"),
    # evaluate
    ("evaluation text shorter than a window", ["evaluate", RUN, "--data", "{ws}/short.txt"],
     r"fewer than one window"),
    ("evaluation text not UTF-8", ["evaluate", RUN, "--data", "{ws}/latin1.txt"], r"not valid UTF-8"),
    # export
    ("export version that exists", ["export", RUN, "--name", "model", "--version", "1", "--out",
                                    "{ws}/saved_models"], r"already exists; versions are never overwritten"),
    ("export to a non-writable folder", ["export", RUN, "--out", "{ws}/a_file"], r"cannot write to"),
    ("export of a non-run", ["export", "{ws}/no_text", "--out", "{ws}/saved_models"],
     r"is not a seqkit run directory"),
    ("export version zero", ["export", RUN, "--version", "0", "--out", "{ws}/saved_models"],
     r"--version must be a positive integer"),
    # classify
    ("missing columns", ["train", "classify", "--data", "{ws}/columns.tsv", "--out", NEW],
     r"has no column 'label' \(columns found: 'review', 'sentiment'\); pass --label-column"),
    ("ragged rows", ["train", "classify", "--data", "{ws}/ragged.csv", "--out", NEW], r"ragged"),
    ("one class only", ["train", "classify", "--data", "{ws}/one_class.csv", "--out", NEW], r"one class only"),
    ("label seen only at evaluation", ["evaluate", "{ws}/classify", "--data", "{ws}/unseen.csv"],
     r"labels the model was not trained on: 'meh'"),
    ("empty row at prediction", ["predict", "{ws}/classify", "--input", "{ws}/blank_line.txt"], r"is empty"),
    # seq2seq
    ("pairs line without a tab", ["train", "seq2seq", "--data", "{ws}/no_tab.tsv", "--out", NEW],
     r"line 2 has no tab"),
    ("pairs line with an empty side", ["train", "seq2seq", "--data", "{ws}/empty_side.tsv", "--out", NEW],
     r"line 2 has an empty target"),
    ("unknown characters for seq2seq", ["generate", "{ws}/seq2seq", "--input", "abc!"],
     r"not in the model's vocabulary: '!'"),
    ("zero max length", ["generate", "{ws}/seq2seq", "--input", "abc", "--max-length", "0"],
     r"--max-length must be a positive integer"),
    ("char-lm option on a seq2seq run", ["generate", "{ws}/seq2seq", "--prime", "abc"], r"--prime"),
    # serve
    ("serve a folder without models", ["serve", "{ws}/empty_models"], r"no models under"),
    ("serve a missing folder", ["serve", "{ws}/nowhere"], r"model folder .* does not exist"),
    ("port out of range", ["serve", "{ws}/saved_models", "--port", "70000"],
     r"Invalid value for '--port': 70000 is not in the range 1<=x<=65535"),
    ("empty cell list", ["diagnose", "--compare", ","], r"--compare ',' must name distinct cells"),
    # diagnose
    ("conflicting flags", ["diagnose", "--cell", "rnn", "--compare", "lstm"], r"cannot be combined"),
    ("unknown cell in a list", ["diagnose", "--compare", "rnn,foo"], r"unknown cell 'foo' in --compare"),
    ("history of a folder without steps.csv", ["diagnose", "{ws}/no_text", "--history"], r"has no steps.csv"),
    ("zero radius", ["diagnose", "--exploding", "--radius", "0"], r"--radius and --clip-norm must be > 0"),
]


@pytest.mark.parametrize("name, args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(ws, name, args, message, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    before = snapshot(ws)
    try:
        main([a.format(ws=ws) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code not in (0, None), err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert __import__("re").search(message, lines[0]), lines[0]
    assert snapshot(ws) == before


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_debug_shows_the_traceback(ws):
    with pytest.raises(Exception, match="not in the model's vocabulary"):
        main(["--debug", "generate", str(ws / "run"), "--prime", "ZEBRA"])


@pytest.mark.parametrize("flag", ["--port", "--grpc-port"])
def test_serve_on_a_port_in_use_is_one_line(ws, flag, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--grpc-port" if flag == "--port" else "--port"
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            free_port = free.getsockname()[1]
        with pytest.raises(SystemExit) as exit_:
            main(["serve", str(ws / "saved_models"), flag, str(port), other, str(free_port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert err == [f"error: cannot serve on 127.0.0.1:{port} (Address already in use); pass another {flag}"]
