"""Every command against bad input, as a user runs it: the CLI, the Python API and the server.

For each case: a non-zero exit, exactly one line on stderr that starts with
``error:`` and says what is wrong (and, by the message, what to do), no
traceback, and not one file of the workspace changed, added or left
half-written (a hash of every file, hidden ones included, before and after).
The Python API answers with one exception (ValueError, or SeqkitError naming
the flag the CLI passes it as); the server with a 4xx and a JSON error.
"""

import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from seqkit import export
from seqkit.cli import main
from seqkit.config import CharLMConfig, ClassifyConfig, Seq2SeqConfig
from seqkit.errors import SeqkitError, with_flags
from seqkit.tasks import char_lm, classify, seq2seq
from seqkit.training import rundir

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
    os.mkfifo(root / "pipe.txt")  # a named pipe: exists, but is no regular file (reading it would block)
    (root / "data.xyz").write_text("text,label\ngood,pos\n", encoding="utf-8")
    shutil.copytree(root / "classify", root / "eval_is_a_file")
    shutil.rmtree(root / "eval_is_a_file" / "eval", ignore_errors=True)
    (root / "eval_is_a_file" / "eval").write_text("not a folder", encoding="utf-8")
    shutil.copytree(run, root / "bad_config")
    (root / "bad_config" / "config.json").write_text("{not json", encoding="utf-8")
    export.export(root / "seq2seq", name="reverse", out=root / "saved_models")
    return root


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


RUN, NEW = "{ws}/run", "{ws}/new_run"
TRAIN = ["train", "char-lm", "--out", NEW]
CASES = [
    # train char-lm: data
    ("missing file", [*TRAIN, "--data", "{ws}/missing.txt"],
     r"^error: --data .*missing.txt does not exist; check the path$"),
    # a missing --data: one message for every task, train and evaluate, before any reading or writing
    ("missing classify data file", ["train", "classify", "--data", "{ws}/missing.csv", "--out", NEW],
     r"^error: --data .*missing.csv does not exist; check the path$"),
    ("missing classify data file of no known format", ["train", "classify", "--data", "{ws}/missing.xyz", "--out", NEW],
     r"^error: --data .*missing.xyz does not exist; check the path$"),
    ("missing pairs file", ["train", "seq2seq", "--data", "{ws}/missing.tsv", "--out", NEW],
     r"^error: --data .*missing.tsv does not exist; check the path$"),
    ("missing evaluation text", ["evaluate", RUN, "--data", "{ws}/missing.txt"],
     r"^error: --data .*missing.txt does not exist; check the path$"),
    ("missing classify evaluation file", ["evaluate", "{ws}/classify", "--data", "{ws}/missing.xyz"],
     r"^error: --data .*missing.xyz does not exist; check the path$"),
    ("missing seq2seq evaluation pairs", ["evaluate", "{ws}/seq2seq", "--data", "{ws}/missing.tsv"],
     r"^error: --data .*missing.tsv does not exist; check the path$"),
    ("missing diagnosis text", ["diagnose", "gradients", "--cell", "rnn", "--data", "{ws}/missing.txt", "--out",
                                "{ws}/d"], r"^error: --data .*missing.txt does not exist; check the path$"),
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
    # serve binds its ports before it reads the folder: free ones ({port}), since 8501/8500 may be taken
    ("serve a folder without models", ["serve", "{ws}/empty_models", "--port", "{port}", "--grpc-port", "0"],
     r"no models under"),
    ("serve a missing folder", ["serve", "{ws}/nowhere", "--port", "{port}", "--grpc-port", "0"],
     r"model folder .* does not exist"),
    ("port out of range", ["serve", "{ws}/saved_models", "--port", "70000"],
     r"Invalid value for '--port': 70000 is not in the range 1<=x<=65535"),
    ("empty cell list", ["diagnose", "gradients", "--compare", ","], r"--compare ',' must name distinct cells"),
    # diagnose
    ("conflicting flags", ["diagnose", "gradients", "--cell", "rnn", "--compare", "lstm"], r"cannot be combined"),
    ("unknown cell in a list", ["diagnose", "gradients", "--compare", "rnn,foo"], r"unknown cell 'foo' in --compare"),
    ("history of a folder without steps.csv", ["diagnose", "history", "{ws}/no_text"], r"has no steps.csv"),
    ("zero radius", ["diagnose", "exploding", "--radius", "0"], r"--radius must be a finite number > 0; received 0"),
    # float options: NaN and inf are refused before anything runs (with --out in the workspace, a run would show)
    ("NaN radius", ["diagnose", "exploding", "--radius", "nan", "--steps", "1", "--out", "{ws}/d"],
     r"^error: --radius must be a finite number > 0; received nan$"),
    ("infinite radius", ["diagnose", "exploding", "--radius", "inf", "--steps", "1", "--out", "{ws}/d"],
     r"--radius must be a finite number > 0; received inf$"),
    ("negative radius", ["diagnose", "exploding", "--radius", "-2", "--steps", "1", "--out", "{ws}/d"],
     r"--radius must be a finite number > 0; received -2"),
    ("NaN clip norm for the demo", ["diagnose", "exploding", "--clip-norm", "nan", "--steps", "1", "--out", "{ws}/d"],
     r"--clip-norm must be a finite number > 0; received nan$"),
    ("infinite clip norm for the demo", ["diagnose", "exploding", "--clip-norm", "inf", "--steps", "1", "--out",
                                         "{ws}/d"], r"--clip-norm must be a finite number > 0; received inf$"),
    ("zero clip norm for the demo", ["diagnose", "exploding", "--clip-norm", "0", "--steps", "1", "--out", "{ws}/d"],
     r"--clip-norm must be a finite number > 0; received 0"),
    ("option of another diagnosis", ["diagnose", "history", "{ws}/run", "--radius", "2"],
     r"--radius is an option of 'seqkit diagnose exploding', not of 'seqkit diagnose history'"),
    # sizes without bounds and integer overflow: each names the option and its range
    ("a billion samples", ["generate", RUN, "--num-samples", "1000000000"],
     r"--num-samples must be at most 10,000 \(the samples are drawn as one batch\); received 1,000,000,000"),
    ("samples times length beyond memory", ["generate", RUN, "--num-samples", "10000", "--length", "100000"],
     r"--num-samples x --length = 10,000 x 100,000 characters exceeds the 100,000,000 held in memory"),
    ("zero samples", ["generate", RUN, "--num-samples", "0"], r"--num-samples must be a positive integer"),
    ("length beyond int32", ["generate", RUN, "--length", str(2**40)], r"--length must be at most 2,147,483,647"),
    ("seed beyond 64 bits at generation", ["generate", RUN, "--seed", str(2**70)],
     r"--seed must be an integer in \[0, 4294967295\] \(2\*\*32 - 1\); received 1180591620717411303424"),
    ("negative seed at generation", ["generate", RUN, "--seed", "-1"], r"--seed must be an integer in \[0, "),
    ("empty prime", ["generate", RUN, "--prime", ""], r"--prime must not be empty"),
    ("temperature NaN", ["generate", RUN, "--temperature", "nan"], r"--temperature must be >= 0"),
    ("top-p NaN", ["generate", RUN, "--top-p", "nan"], r"--top-p must be in \(0, 1\]"),
    ("beam width of 1e8", ["generate", "{ws}/seq2seq", "--input", "abc", "--decode", "beam", "--beam-width",
                           "100000000"], r"--beam-width must be at most 1,000; received 100,000,000"),
    ("beam width of 2**31", ["generate", "{ws}/seq2seq", "--input", "abc", "--decode", "beam", "--beam-width",
                             str(2**31)], r"--beam-width must be at most 1,000; received 2,147,483,648"),
    ("max length of 2**31", ["generate", "{ws}/seq2seq", "--input", "abc", "--max-length", str(2**31)],
     r"--max-length must be at most 10,000 output tokens \(</s> included\)"),
    ("zero beam width", ["generate", "{ws}/seq2seq", "--input", "abc", "--beam-width", "0"],
     r"--beam-width must be a positive integer"),
    ("n-best beyond the beam", ["generate", "{ws}/seq2seq", "--input", "abc", "--decode", "beam", "--n-best", "6"],
     r"--n-best \(6\) cannot exceed --beam-width \(5\)"),
    ("n-best without beam search", ["generate", "{ws}/seq2seq", "--input", "abc", "--n-best", "2"],
     r"--n-best needs --decode beam"),
    ("negative length penalty", ["generate", "{ws}/seq2seq", "--input", "abc", "--length-penalty", "-1"],
     r"--length-penalty must be >= 0"),
    ("seed beyond 64 bits for seq2seq sampling", ["generate", "{ws}/seq2seq", "--input", "abc", "--decode", "sample",
                                                  "--seed", str(2**70)], r"--seed must be an integer in \[0, "),
    ("char-lm option on a seq2seq run: length", ["generate", "{ws}/seq2seq", "--input", "abc", "--length", "5"],
     r"--length does not apply to a seq2seq run; drop it"),
    ("seq2seq option on a char-lm run", ["generate", RUN, "--beam-width", "3", "--input", "x"],
     r"--beam-width, --input do not apply to a char-lm run; drop them"),
    # evaluate takes any run: an option of another task's evaluate is refused, as by generate
    ("seq2seq option at a char-lm evaluation", ["evaluate", RUN, "--data", "{ws}/corpus.txt", "--decode", "beam"],
     r"^error: --decode does not apply to a char-lm run; drop it$"),
    ("beam options at a char-lm evaluation", ["evaluate", RUN, "--data", "{ws}/corpus.txt", "--beam-width", "3",
                                              "--length-penalty", "0.5", "--max-length", "9"],
     r"^error: --beam-width, --length-penalty, --max-length do not apply to a char-lm run; drop them$"),
    ("classify option at a char-lm evaluation", ["evaluate", RUN, "--data", "{ws}/corpus.txt", "--format", "csv"],
     r"^error: --format does not apply to a char-lm run; drop it$"),
    ("options of other tasks at a classify evaluation", ["evaluate", "{ws}/classify", "--data", "{ws}/reviews.csv",
                                                         "--decode", "greedy", "--errors", "replace"],
     r"^error: --decode, --errors do not apply to a classify run; drop them$"),
    ("seq2seq option at a classify evaluation", ["evaluate", "{ws}/classify", "--data", "{ws}/reviews.csv",
                                                 "--max-length", "5"],
     r"^error: --max-length does not apply to a classify run; drop it$"),
    ("options of other tasks at a seq2seq evaluation", ["evaluate", "{ws}/seq2seq", "--format", "csv", "--errors",
                                                        "strict"],
     r"^error: --errors, --format do not apply to a seq2seq run; drop them$"),
    ("evaluation max length beyond the bound", ["evaluate", "{ws}/seq2seq", "--max-length", "20000"],
     r"--max-length must be at most 10,000"),
    ("evaluation beam width zero", ["evaluate", "{ws}/seq2seq", "--decode", "beam", "--beam-width", "0"],
     r"--beam-width must be a positive integer"),
    ("negative prediction batch size", ["predict", "{ws}/classify", "--input", "{ws}/reviews.csv", "--batch-size",
                                        "-5"], r"--batch-size must be a positive integer; received -5"),
    ("prediction batch size beyond int32", ["predict", "{ws}/classify", "--input", "{ws}/reviews.csv",
                                            "--batch-size", str(2**40)], r"--batch-size must be at most 2,147,483,647"),
    ("training seed beyond 64 bits", [*TRAIN, "--data", "{ws}/corpus.txt", "--seed", str(2**70)],
     r"--seed must be an integer in \[0, 4294967295\] \(2\*\*32 - 1\) \(or -1: pick one\)"),
    ("training seed below -1", [*TRAIN, "--data", "{ws}/corpus.txt", "--seed", "-2"], r"--seed must be an integer"),
    ("steps beyond int32", [*TRAIN, "--data", "{ws}/corpus.txt", "--steps", str(2**40)],
     r"--steps must be at most 2,147,483,647"),
    ("units beyond int32", [*TRAIN, "--data", "{ws}/corpus.txt", "--units", str(2**40)],
     r"--units must be at most 2,147,483,647"),
    ("classify seed beyond 64 bits", ["train", "classify", "--synthetic", "parity", "--seed", str(2**70), "--out", NEW],
     r"--seed must be an integer in \[0, "),
    ("seq2seq batch size beyond int32", ["train", "seq2seq", "--synthetic", "reverse", "--batch-size", str(2**31),
                                         "--out", NEW], r"--batch-size must be at most 2,147,483,647"),
    # honest messages: what is wrong with a path, and what to do
    ("character device as --data", [*TRAIN, "--data", "/dev/zero"],
     r"data path /dev/zero is not a regular file \(a character device\); pass a file saved on disk"),
    ("named pipe as --data", [*TRAIN, "--data", "{ws}/pipe.txt"], r"pipe.txt is not a regular file \(a named pipe"),
    ("character device as classify --data", ["train", "classify", "--data", "/dev/zero", "--format", "csv", "--out",
                                             NEW], r"data file /dev/zero is not a regular file \(a character device\)"),
    ("named pipe as seq2seq --data", ["train", "seq2seq", "--data", "{ws}/pipe.txt", "--out", NEW],
     r"pairs file .*pipe.txt is not a regular file \(a named pipe \(FIFO\)\)"),
    ("character device as TOML config", [*TRAIN, "--config", "/dev/zero"], r"/dev/zero is not a regular file"),
    ("named pipe as evaluation text", ["evaluate", RUN, "--data", "{ws}/pipe.txt"], r"is not a regular file"),
    ("character device as prediction input", ["predict", "{ws}/classify", "--input", "/dev/zero", "--format",
                                              "lines"], r"/dev/zero is not a regular file"),
    ("directory as prediction input", ["predict", "{ws}/classify", "--input", "{ws}/no_text", "--format", "csv"],
     r"no_text is not a regular file \(a directory\)"),
    ("out naming an existing file", [*TRAIN[:2], "--data", "{ws}/corpus.txt", "--out", "{ws}/a_file"],
     r"--out .*a_file is a file, not a folder; choose another --out"),
    ("evaluation where eval/ is a file", ["evaluate", "{ws}/eval_is_a_file", "--data", "{ws}/reviews.csv"],
     r"cannot write to .*eval: .*eval is a file, not a folder; make the run directory writable"),
    ("damaged config.json", ["generate", "{ws}/bad_config"], r"config.json is damaged"),
    ("a file as the run", ["generate", "{ws}/corpus.txt"], r"corpus.txt is not a directory; pass a seqkit run"),
    ("a missing run", ["generate", "{ws}/nowhere"], r"nowhere is not a directory"),
    # more options out of range, and files of the wrong kind
    ("dropout of one", [*TRAIN, "--data", "{ws}/corpus.txt", "--dropout", "1"], r"--dropout must be in \[0, 1\)"),
    ("validation share of one", [*TRAIN, "--data", "{ws}/corpus.txt", "--val-fraction", "1"],
     r"--val-fraction must be in \[0, 1\)"),
    ("negative clip norm", [*TRAIN, "--data", "{ws}/corpus.txt", "--clip-norm", "-1"], r"--clip-norm must be >= 0"),
    ("zero epochs", [*TRAIN, "--data", "{ws}/corpus.txt", "--epochs", "0"], r"--epochs must be a positive integer"),
    ("zero layers", [*TRAIN, "--data", "{ws}/corpus.txt", "--layers", "0"], r"--layers must be a positive integer"),
    ("unknown decoding errors mode", [*TRAIN, "--errors", "ignore"], r"Invalid value for '--errors': 'ignore'"),
    ("non-integer units", [*TRAIN, "--units", "1e3"], r"Invalid value for '--units': '1e3' is not a valid integer"),
    ("both data and task", ["train", "classify", "--data", "{ws}/reviews.csv", "--synthetic", "adding", "--out", NEW],
     r"pass either --data FILE .* not both"),
    ("neither data nor task", ["train", "classify", "--out", NEW], r"pass either --data FILE .* not neither"),
    ("copy task shorter than its symbols", ["train", "classify", "--synthetic", "copy", "--length", "3",
                                            "--copy-length", "5", "--out", NEW],
     r"--length \(3\) must exceed --copy-length \(5\)"),
    ("class weights on a regression task", ["train", "classify", "--synthetic", "adding", "--class-weight", "balanced",
                                            "--out", NEW], r"--class-weight applies to single-label classification"),
    ("unlabelled lines as training data", ["train", "classify", "--data", "{ws}/corpus.txt", "--out", NEW],
     r"has no labels \(lines holds inputs only\)"),
    ("unknown file extension", ["train", "classify", "--data", "{ws}/data.xyz", "--out", NEW],
     r"cannot tell the format of .*data.xyz from its extension; pass --format"),
    ("dot attention with a bidirectional encoder", ["train", "seq2seq", "--synthetic", "reverse", "--attention", "dot",
                                                    "--bidirectional", "--out", NEW], r"--attention dot needs"),
    ("zero digits", ["train", "seq2seq", "--synthetic", "addition", "--digits", "0", "--out", NEW],
     r"--digits must be a positive integer"),
    ("predict with a char-lm run", ["predict", RUN, "--input", "{ws}/reviews.csv"], r"is a char-lm run, not a classify"),
    ("predict with an unknown extension", ["predict", "{ws}/classify", "--input", "{ws}/data.xyz"],
     r"cannot tell the format"),
    ("two data files for a classify evaluation", ["evaluate", "{ws}/classify", "--data", "{ws}/reviews.csv", "--data",
                                                  "{ws}/reviews.csv"], r"scored on one --data file; pass one"),
    ("char-lm evaluation without data", ["evaluate", RUN], r"Missing option '--data'"),
    ("sampling at evaluation", ["evaluate", "{ws}/seq2seq", "--decode", "sample"],
     r"Invalid value for '--decode': 'sample'"),
    ("export name unusable in a URL", ["export", RUN, "--name", "my model", "--out", "{ws}/saved_models"],
     r"model name 'my model' is not usable in a URL"),
    ("export of a damaged run", ["export", "{ws}/truncated", "--out", "{ws}/saved_models"],
     r"cannot load model weights from .* damaged"),
    ("zero max length for serving", ["serve", "{ws}/saved_models", "--max-length", "0"],
     r"Invalid value for '--max-length': 0 is not in the range x>=1"),
    ("gRPC port out of range", ["serve", "{ws}/saved_models", "--grpc-port", "70000"],
     r"Invalid value for '--grpc-port'"),
    ("history without a run", ["diagnose", "history"], r"Missing argument 'RUN_DIR'"),
    ("nothing to diagnose", ["diagnose", "gradients"], r"nothing to diagnose"),
    ("diagnosis seed beyond 64 bits", ["diagnose", "exploding", "--seed", str(2**70)],
     r"--seed must be an integer in \[0, 4294967295\]"),
    ("diagnosis units beyond int32", ["diagnose", "gradients", "--cell", "rnn", "--units", str(2**40)],
     r"--units must be at most 2,147,483,647"),
    ("diagnosis width with a trained run", ["diagnose", "gradients", RUN, "--units", "8", "--length", "5",
                                            "--batch-size", "2", "--out", "{ws}/d"],
     r"^error: --units does not apply to a trained run's profile \(RUN_DIR: its model has its own sizes\); drop it$"),
    ("diagnosis default sizes given with a trained run", ["diagnose", "gradients", RUN, "--units", "128",
                                                          "--input-dim", "32", "--length", "5", "--out", "{ws}/d"],
     r"--units, --input-dim do not apply to a trained run's profile \(RUN_DIR: .*\); drop them$"),
    ("diagnosis input width zero", ["diagnose", "gradients", "--cell", "rnn", "--input-dim", "0"],
     r"--input-dim must be a positive integer"),
    ("diagnosis output naming a file", ["diagnose", "gradients", "--cell", "rnn", "--out", "{ws}/a_file"],
     r"--out .*a_file is a file, not a folder; choose another --out"),
    ("character device as diagnosis text", ["diagnose", "gradients", "--cell", "rnn", "--data", "/dev/zero"],
     r"data path /dev/zero is not a regular file \(a character device\)"),
    ("unknown command", ["fit"], r"No such command 'fit'"),
    ("missing run argument", ["generate"], r"Missing argument 'PATH'"),
]


@pytest.mark.parametrize("name, args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(ws, name, args, message, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    before = snapshot(ws)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        main([a.format(ws=ws, port=port) for a in args])
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


STDIN_CASES = [
    ("prediction input not UTF-8", ["predict", "{ws}/classify"], b"good film\n\xff\xfe bad\n",
     r"line 2 of standard input is not valid UTF-8: byte 0xff at offset 0"),
    ("prediction input with an empty line", ["predict", "{ws}/classify"], b"good film\n\nbad film\n",
     r"line 2 of standard input is empty; remove empty lines"),
    ("empty prediction input", ["predict", "{ws}/classify"], b"", r"standard input holds no examples"),
    ("prediction line past the first batch", ["predict", "{ws}/classify", "--batch-size", "2"],
     b"good\nfine\nbad\n\n", r"line 4 of standard input is empty"),
    ("seq2seq input not in the vocabulary", ["generate", "{ws}/seq2seq"], b"abc\nab#\n", r"'#'"),
    ("seq2seq input not UTF-8", ["generate", "{ws}/seq2seq"], b"abc\nab\xe9\n",
     r"line 2 of standard input is not valid UTF-8: byte 0xe9 at offset 2; convert it to UTF-8"),
]


class Stdin:
    """Standard input as bytes (``sys.stdin.buffer``), as a pipe gives it."""

    def __init__(self, data):
        import io

        self.buffer = io.BytesIO(data)

    def __iter__(self):
        return (line.decode("utf-8") for line in self.buffer)


def run_main(ws, args, capsys):
    """``(exit code, stderr lines)`` of ``seqkit ARGS`` run in this process."""
    try:
        main([a.format(ws=ws) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    return code, err.strip().splitlines()


@pytest.mark.parametrize("name, args, data, message", STDIN_CASES, ids=[c[0] for c in STDIN_CASES])
def test_bad_standard_input_is_one_line_and_changes_nothing(ws, name, args, data, message, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Stdin(data))
    before = snapshot(ws)
    code, lines = run_main(ws, args, capsys)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert snapshot(ws) == before


# -- the Python API: one exception naming the argument -------------------------------------------


def tiny_model(clip_norm=1.0, max_nonfinite=10):
    import keras

    from seqkit.training import SeqModel

    inputs = keras.Input((None, 2))
    return SeqModel(inputs, keras.layers.Dense(1)(inputs), clip_norm=clip_norm, max_nonfinite=max_nonfinite)


def stateful_short_batch():
    import keras

    from seqkit.layers import GRU

    layer = GRU(20, stateful=True)
    keras.Sequential([keras.Input(batch_shape=(4, None, 3)), layer])
    layer(np.zeros((3, 5, 3), np.float32))


def api_cases():
    from seqkit import layers, losses
    from seqkit.tasks.classify.sequences import read_examples
    from seqkit.tasks.seq2seq.data import read_pairs
    from seqkit.text.corpus import read_corpus

    return [
        ("LSTM units zero", lambda ws: layers.LSTM(0), r"`units` must be a positive integer; received units=0"),
        ("GRU units negative", lambda ws: layers.GRU(-1), r"`units` must be a positive integer"),
        ("SimpleRNN dropout above one", lambda ws: layers.SimpleRNN(4, dropout=1.5), r"`dropout` must be a float"),
        ("LSTM unknown activation", lambda ws: layers.LSTM(4, activation="bogus"), r"argument `activation`"),
        ("LSTM unknown initializer", lambda ws: layers.LSTM(4, kernel_initializer="nope"),
         r"argument `kernel_initializer`"),
        ("unknown cell name", lambda ws: layers.recurrent_layer("transformer", 4), r"Unknown cell 'transformer'"),
        ("unknown attention score", lambda ws: layers.SequenceAttention("cosine"), r"Unknown attention score"),
        ("attention units zero", lambda ws: layers.SequenceAttention("general", units=0), r"`units` must be"),
        ("unknown pooling mode", lambda ws: layers.SequencePooling("median"), r"Unknown pooling mode 'median'"),
        ("rank-2 input to a layer", lambda ws: layers.LSTM(4)(np.zeros((2, 3), np.float32)), r"rank 3"),
        ("stateful layer fed a short last batch", lambda ws: stateful_short_batch(),
         r"GRU layer .* is stateful and was built for batch size 4: every batch must hold 4 sequences.*"
         r"received a batch of 3"),
        ("negative clip_norm", lambda ws: tiny_model(clip_norm=-1), r"clip_norm must be a number >= 0"),
        ("zero max_nonfinite", lambda ws: tiny_model(max_nonfinite=0), r"max_nonfinite must be a positive integer"),
        ("time-major labels", lambda ws: losses.SequenceCrossentropy()(np.zeros((5, 2)), np.zeros((2, 5, 3))),
         r"Sequence labels must have shape"),
        ("config seed out of range", lambda ws: CharLMConfig(seed=2**70).validate(), r"`seed` must be an integer in"),
        # the Python API's errors name its arguments (the CLI's, the same errors as flags: CASES above)
        ("config with data and a synthetic task", lambda ws: ClassifyConfig(data="x.csv", synthetic="adding").validate(),
         r"pass either `data` FILE .* or `synthetic` adding\|copy\|parity .*not both"),
        ("config dropout of 1.5", lambda ws: ClassifyConfig(synthetic="adding", dropout=1.5).validate(),
         r"^`dropout` must be in \[0, 1\); received 1.5$"),
        ("config units beyond int32", lambda ws: ClassifyConfig(synthetic="adding", units=2**40).validate(),
         r"`units` must be at most"),
        ("generate a billion samples", lambda ws: char_lm.generate(ws / "run", num_samples=10**9),
         r"`num_samples` must be at most 10,000"),
        ("generate with a fractional top-k", lambda ws: char_lm.generate(ws / "run", top_k=1.5),
         r"`top_k` must be >= 0, an integer"),
        ("generate with a negative seed", lambda ws: char_lm.generate(ws / "run", seed=-5),
         r"`seed` must be an integer in \[0, 4294967295\]"),
        ("seq2seq beam width of 1e8", lambda ws: seq2seq.generate(ws / "seq2seq", ["abc"], decode="beam",
                                                                   beam_width=10**8), r"`beam_width` must be at most"),
        ("seq2seq max length of 2**31", lambda ws: seq2seq.generate(ws / "seq2seq", ["abc"], max_length=2**31),
         r"`max_length` must be at most 10,000"),
        ("predict with batch size -5", lambda ws: classify.predict(ws / "classify", inputs=["good"], batch_size=-5),
         r"`batch_size` must be a positive integer; received -5"),
        ("predict with neither source nor inputs", lambda ws: classify.predict(ws / "classify"),
         r"pass either source .* or inputs"),
        ("predict lines of nothing", lambda ws: list(classify.predict_lines(ws / "classify", [])),
         r"standard input holds no examples"),
        ("unknown characters to encode", lambda ws: char_lm.build_vocabulary("abc").encode("abz", what="text"),
         r"not in the model's vocabulary: 'z'"),
        ("character device as a corpus", lambda ws: read_corpus(["/dev/zero"]), r"not a regular file"),
        ("named pipe as examples", lambda ws: read_examples(ws / "pipe.txt", fmt="lines", labelled=False),
         r"not a regular file \(a named pipe"),
        ("named pipe as pairs", lambda ws: read_pairs(ws / "pipe.txt"), r"not a regular file \(a named pipe"),
        ("export version zero", lambda ws: export.export(ws / "run", version=0, out=ws / "saved_models"),
         r"`version` must be a positive integer"),
        ("char-lm evaluation of missing text", lambda ws: char_lm.evaluate(ws / "run", [str(ws / "missing.txt")]),
         r"^`data` .*missing.txt does not exist; check the path$"),
        ("classify evaluation of a missing file", lambda ws: classify.evaluate(ws / "classify", ws / "missing.csv"),
         r"^`data` .*missing.csv does not exist; check the path$"),
        ("seq2seq evaluation of missing pairs", lambda ws: seq2seq.evaluate(ws / "seq2seq", ws / "missing.tsv"),
         r"^`data` .*missing.tsv does not exist; check the path$"),
    ]


API_CASES = api_cases()


@pytest.mark.parametrize("name, call, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_api_arguments_raise_one_clear_error(ws, name, call, message):
    before = snapshot(ws)
    with pytest.raises((ValueError, SeqkitError)) as raised:
        call(ws)
    text = str(raised.value).replace("\x1b[1m", "").replace("\x1b[0m", "")
    assert re.search(message, text), text
    if isinstance(raised.value, SeqkitError):
        assert "\n" not in text  # the CLI prints it as one line
    assert snapshot(ws) == before


@pytest.mark.parametrize("train, config", [
    (char_lm.train, CharLMConfig(data=["corpus.txt", "missing.txt"])),
    (classify.train, ClassifyConfig(data="missing.csv")),
    (classify.train, ClassifyConfig(data="missing.xyz")),  # before the format, which its extension cannot tell
    (seq2seq.train, Seq2SeqConfig(data="missing.tsv")),
], ids=["char-lm", "classify", "classify, no known format", "seq2seq"])
def test_missing_data_is_one_message_before_the_run_directory_is_made(train, config, tmp_path, monkeypatch):
    """Every task says it the same way, and before ``run_directory`` makes (or locks) anything."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.setattr(rundir, "run_directory", lambda *args: pytest.fail("the run directory was made"))
    config.out = str(tmp_path / "run")
    with pytest.raises(SeqkitError, match=r"^`data` \S+missing\.(txt|csv|xyz|tsv) does not exist; check the path$"):
        train(config, verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]


# -- the server: a 4xx with a JSON error, over HTTP -------------------------------------------------

GENERATE = {"prime": "a", "length": 5, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 1}
SERVER_CASES = [
    ("generate length zero", "/v1/models/model:predict",
     {"signature_name": "generate", "instances": [{**GENERATE, "length": 0}]}, 400, "length must be a positive"),
    ("generate top_k beyond int32", "/v1/models/model:predict",
     {"signature_name": "generate", "instances": [{**GENERATE, "top_k": 2**40}]}, 400, "top_k"),
    ("generate seed beyond int64", "/v1/models/model:predict",
     {"signature_name": "generate", "instances": [{**GENERATE, "seed": 2**70}]}, 400, "seed"),
    ("generate top_p zero", "/v1/models/model:predict",
     {"signature_name": "generate", "instances": [{**GENERATE, "top_p": 0.0}]}, 400, "top_p must be in (0, 1]"),
    ("generate top_p above one", "/v1/models/model:predict",
     {"signature_name": "generate", "instances": [{**GENERATE, "top_p": 1.5}]}, 400, "top_p must be in (0, 1]"),
    ("generate rows that disagree", "/v1/models/model:predict",
     {"signature_name": "generate", "instances": [GENERATE, {**GENERATE, "temperature": 0.5}]}, 400, "temperature"),
    ("beam width over the limit", "/v1/models/reverse:predict",
     {"signature_name": "translate", "instances": [{"text": "abc", "beam_width": 10**8, "max_length": 5}]}, 400,
     "beam_width exceeds this server's limit"),
    ("beam width zero", "/v1/models/reverse:predict",
     {"signature_name": "translate", "instances": [{"text": "abc", "beam_width": 0, "max_length": 5}]}, 400,
     "beam_width must be > 0"),
    ("max length over the limit", "/v1/models/reverse:predict",
     {"signature_name": "translate", "instances": [{"text": "abc", "beam_width": 2, "max_length": 2**31 - 1}]},
     400, "max_length exceeds this server's limit"),
    ("negative max length", "/v1/models/reverse:predict",
     {"signature_name": "translate", "instances": [{"text": "abc", "beam_width": 2, "max_length": -1}]}, 400,
     "max_length must be >= 0 (0: the default)"),
    ("step with a state of the wrong width", "/v1/models/model:predict",
     {"signature_name": "step", "instances": [{"text": "a", "state": [0.0, 1.0, 2.0]}]}, 400,
     "state must have shape [B, 16]: zeros to start, then the state a step returned"),
    ("instances not a list", "/v1/models/model:predict", {"instances": "abc"}, 400, "non-empty list"),
    ("no instances", "/v1/models/model:predict", {"instances": []}, 400, "non-empty list"),
    ("body a JSON array", "/v1/models/model:predict", ["abc"], 400, "must be a JSON object"),
    ("signature name a number", "/v1/models/model:predict", {"signature_name": 5, "instances": ["a"]}, 400,
     "signature_name must be a string"),
    ("too many rows", "/v1/models/model:predict", {"instances": ["a"] * 1025}, 400, "exceed this server's limit"),
    ("body not UTF-8", "/v1/models/model:predict", b'{"instances": ["\xff"]}', 400, "not valid JSON"),
    ("metadata of a missing model", "/v1/models/nope/metadata", None, 404, "Servable not found"),
    ("version zero", "/v1/models/model/versions/0", None, 404, "Could not find version 0 of model model"),  # TF Serving's words
    ("JSON nested 100,000 deep", "/v1/models/model:predict", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000
     + b"}", 400, "nested too deeply"),
    ("instances nested 900 deep", "/v1/models/model:predict", {"instances": [[[[[[[[["a"]]]]]]]]] * 1}, 400,
     "input text must have rank 1"),
    ("generate top_p NaN", "/v1/models/model:predict",
     b'{"signature_name": "generate", "instances": [{"prime": "a", "length": 5, "temperature": 1.0, "top_k": 0, '
     b'"top_p": NaN, "seed": 1}]}', 400, "top_p must be in (0, 1] (1: off)"),
    ("step with a ragged state", "/v1/models/model:predict",
     {"signature_name": "step", "inputs": {"text": ["a", "b"], "state": [[0.0] * 16, [0.0] * 3]}}, 400,
     "input state must hold float32 values of one shape"),
    ("unknown label", "/v1/models/model/labels/stable:predict", {"instances": ["a"]}, 400,
     "Unrecognized servable version label: stable"),
    ("GET on predict", "/v1/models/model:predict", None, 405, "POST"),
]


@pytest.fixture(scope="module")
def server(ws):
    """seqkit's REST app on a free port, in a thread of this process (uvicorn, real HTTP)."""
    import socket

    import uvicorn

    from seqkit import serve as serving

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serving.make_app(serving.ModelRegistry(ws / "saved_models", max_length=300), max_body_bytes=1 << 20)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def request(url, body):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("name, path, body, code, message", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_bad_requests_are_a_4xx_naming_the_problem(ws, server, name, path, body, code, message):
    before = snapshot(ws)
    status, reply = request(server + path, body)
    assert status == code, reply
    assert message in reply["error"] and "\n" not in reply["error"], reply
    assert snapshot(ws) == before


def test_there_are_at_least_100_cases():
    assert len(CASES) + len(STDIN_CASES) + len(API_CASES) + len(SERVER_CASES) >= 100


# -- faults met as they happen, and the bounds that are no faults ------------------------------------


def test_generate_without_prime_works_for_a_corpus_without_newline(ws, capsys):
    """The workspace corpus has no newline: the default prime must still be one the model knows
    (oracle: the vocabulary; the output starts with the prime, a space here)."""
    assert "\n" not in (ws / "corpus.txt").read_text(encoding="utf-8")
    code, out, err = run_cli_out(ws, ["generate", RUN, "--length", "20", "--seed", "0"], capsys)
    assert code == 0, err
    assert out.startswith(" ") and len(out) == 1 + 20 + 1  # prime, 20 characters, the final newline
    assert char_lm.default_prime(char_lm.vocabulary(ws / "run")) == " "


def test_default_prime_is_in_every_vocabulary():
    for text, prime in (("ab\ncd", "\n"), ("ab cd", " "), ("xyz", "x")):
        vocab = char_lm.build_vocabulary(text)
        assert char_lm.default_prime(vocab) == prime and prime in vocab.index


def test_top_k_beyond_the_vocabulary_keeps_every_character(ws, capsys):
    """top_k >= V is no restriction (as 0 is): the same text as without it, for one seed."""
    code, with_k, err = run_cli_out(ws, ["generate", RUN, "--length", "30", "--seed", "3", "--top-k", str(2**40)],
                                    capsys)
    assert code == 0, err
    code, without, err = run_cli_out(ws, ["generate", RUN, "--length", "30", "--seed", "3"], capsys)
    assert code == 0 and with_k == without


def run_cli_out(ws, args, capsys):
    try:
        main([a.format(ws=ws) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_prediction_streams_an_endless_input(ws):
    """An endless iterator (as ``yes good film |`` gives) is answered batch by batch: the first
    predictions come without the input ever ending (reading it all first would never return)."""
    rows = classify.predict_lines(ws / "classify", itertools.repeat("good film"), batch_size=4)
    first = list(itertools.islice(rows, 10))
    alone = classify.predict(ws / "classify", inputs=["good film"])[0]  # oracle: the example predicted alone
    for row in first:
        assert row["label"] == alone["label"]
        assert row["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)


def test_yes_piped_into_predict_streams(ws):
    """``yes "good film" | seqkit predict RUN | head -n 5``: five JSON lines, and the command ends."""
    command = (f"yes 'good film' | {sys.executable} -m seqkit.cli predict {ws / 'classify'} --batch-size 2 "
               "| head -n 5")
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(json.loads(line)["label"] in ("pos", "neg") for line in lines), result
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr


def test_a_run_directory_deleted_while_training_stops_it(tmp_path):
    """The folder removed after the first step: training stops with a one-line error, and no
    partial folder appears again at its path (before, checkpoints re-created it without config.json)."""
    out = tmp_path / "run"

    class Delete(__import__("keras").callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if out.exists():
                shutil.rmtree(out)

    config = Seq2SeqConfig(synthetic="reverse", length=3, size=100, units=4, embedding_dim=4, batch_size=8,
                           steps=3, val_decode=0, seed=0, out=str(out))
    with pytest.raises(SeqkitError, match=r"was deleted or moved during training \(config.json is gone\); "
                                          r"training stopped") as raised:
        seq2seq.train(config, verbose=0, callbacks=[Delete()])
    assert "\n" not in str(raised.value)
    assert not out.exists()


def test_evaluate_passes_the_options_of_the_runs_task(ws, tmp_path, capsys):
    """The counterpart of CASES' refusals: the options that apply to a run's task reach its evaluate
    (oracle: what each one changes: --format csv reads a .txt file as a table, not as unlabelled lines)."""
    code, out, err = run_cli_out(ws, ["evaluate", RUN, "--data", "{ws}/corpus.txt", "--errors", "replace"], capsys)
    assert code == 0 and out.startswith("loss "), err
    run = shutil.copytree(ws / "classify", tmp_path / "classify")
    shutil.copy(ws / "reviews.csv", tmp_path / "reviews.txt")
    code, out, err = run_cli_out(ws, ["evaluate", str(run), "--data", str(tmp_path / "reviews.txt"), "--format",
                                      "csv"], capsys)
    assert code == 0 and "accuracy" in out, err
    run = shutil.copytree(ws / "seq2seq", tmp_path / "seq2seq")
    (tmp_path / "pairs.tsv").write_text("abc\tcba\nab\tba\n", encoding="utf-8")
    code, out, err = run_cli_out(ws, ["evaluate", str(run), "--data", str(tmp_path / "pairs.tsv"), "--decode", "beam",
                                      "--beam-width", "2", "--length-penalty", "0.5", "--max-length", "6"], capsys)
    assert code == 0 and "over 2 pairs (beam decoding)" in out, err


def test_evaluate_on_a_read_only_run_fails_before_scoring(ws, tmp_path):
    """A read-only run directory: one line naming the folder and the fix, and no scores computed
    to be lost. As root, permissions do not stop writes, so the run is mounted read-only in a
    private mount namespace instead."""
    run = tmp_path / "ro_run"
    shutil.copytree(ws / "classify", run)
    args = [sys.executable, "-m", "seqkit.cli", "evaluate", str(run), "--data", str(ws / "reviews.csv")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if os.geteuid() != 0:
        for p in [run, *run.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
        command = args
    else:
        if shutil.which("unshare") is None or subprocess.run(
                ["unshare", "-m", "true"], capture_output=True).returncode != 0:
            pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
        command = ["unshare", "-m", "sh", "-c", f'mount --bind "{run}" "{run}" && mount -o remount,bind,ro "{run}" '
                   f'"{run}" && exec "$@"', "sh", *args]
    before = snapshot(run)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    finally:
        for p in [run, *run.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and re.search(r"error: cannot write to .*eval \((Read-only file system|Permission "
                                         r"denied)\); make the run directory writable, or evaluate a copy", lines[0])
    assert result.stdout == ""  # nothing scored
    assert snapshot(run) == before


def test_a_stateful_model_fed_a_short_last_batch_says_what_to_do():
    """model.predict with 7 rows in batches of 4 (the last one short): the error names the batch size
    the stateful layer was built for and what to do, where before it was TF's "Incompatible shapes"."""
    import keras

    from seqkit.layers import LSTM

    model = keras.Sequential([keras.Input(batch_shape=(4, None, 3)), LSTM(20, stateful=True)])
    model.predict(np.zeros((8, 5, 3), np.float32), batch_size=4, verbose=0)  # full batches: fine
    with pytest.raises(Exception, match=r"is stateful and was built for batch size 4: every batch must hold 4"):
        model.predict(np.zeros((7, 5, 3), np.float32), batch_size=4, verbose=0)


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


@pytest.mark.parametrize("error", ["numpy", "tensorflow"])
def test_out_of_memory_is_one_line(ws, error, capsys, monkeypatch):
    """An allocation that fails (NumPy's MemoryError, TF's ResourceExhaustedError, whose text is many
    lines) reaches the user as one line that says to ask for less, naming the size options of the
    command that ran (generate's here), not a traceback."""
    import tensorflow as tf

    def fail(*args, **kwargs):
        if error == "numpy":
            raise MemoryError("Unable to allocate 8.00 TiB for an array with shape (1099511627776,)")
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4,1000000000]\n"
                                               "\t [[{{node lstm/MatMul}}]]")

    monkeypatch.setattr(char_lm.api, "generate", fail)  # the function the registry gives the CLI
    code, lines = run_main(ws, ["generate", RUN, "--length", "5"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert re.fullmatch(r"error: out of memory \((Unable to allocate 8.00 TiB|OOM when allocating tensor).*\); ask "
                        r"for less: lower --length, --num-samples, --beam-width or --max-length", lines[0]), lines[0]


def test_export_to_a_full_disk_is_one_line_and_leaves_no_partial_model(ws, tmp_path):
    """A full disk (a 64 KiB tmpfs, mounted in a private mount namespace) under --out: TensorFlow
    reports it as RESOURCE_EXHAUSTED, which must read as a full disk, not as out of memory; no
    half-written version folder is left, and the run is untouched."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespaces here: no way to mount a small filesystem")
    full = tmp_path / "full"
    full.mkdir()
    run = ws / "classify"
    before = snapshot(run)
    args = [sys.executable, "-m", "seqkit.cli", "export", str(run), "--out", str(full)]
    command = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{full}" && "$@"; code=$?; '
               f'find "{full}" -mindepth 2 > "{tmp_path}/left.txt"; exit $code', "sh", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the device"), lines
    assert (tmp_path / "left.txt").read_text() == ""  # no version folder, no temporary one
    assert snapshot(run) == before


def test_the_cli_names_the_library_arguments_as_its_flags(capsys, tmp_path):
    """Oracle: the same error through the API (argument names) and through the CLI (flags),
    including arguments whose flag is not their name (inputs: --input)."""
    assert with_flags("pass `data` or `synthetic`; `inputs`, `val_fraction` too", {"inputs": "--input"}) == \
        "pass --data or --synthetic; --input, --val-fraction too"
    code, _, err = run_cli_out(tmp_path, ["train", "classify", "--synthetic", "adding", "--data",
                                          str(tmp_path / "x.csv"), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "pass either --data FILE" in err and "or --synthetic adding|copy|parity" in err
    assert "`" not in err
    assert not (tmp_path / "run").exists()


def test_a_setting_is_its_flags_in_the_cli_and_its_argument_in_the_api():
    """Oracle: known answers for with_flags on the settings the resume and --init-from errors print."""
    flags = {"bidirectional": "--bidirectional", "bidirectional=True": "--bidirectional",
             "bidirectional=False": "--no-bidirectional", "synthetic": "--synthetic"}
    message = "`bidirectional=False` (the run's: `bidirectional=True`), `units=16` (the run's: 8), `synthetic='copy'`"
    assert with_flags(message, flags) == ("--no-bidirectional (the run's: --bidirectional), --units 16 (the run's: 8), "
                                          "--synthetic 'copy'")
