"""Sequence to sequence: an encoder-decoder of seqkit cells, with attention and in-graph decoding.

Python API (the CLI only calls these):

    config = Seq2SeqConfig(data="pairs.tsv", attention="general", seed=0, out="runs/pairs")
    summary = train(config)                                        # writes the run directory
    texts = generate("runs/pairs", ["535+61"], decode="beam", beam_width=5)
    scores = evaluate("runs/pairs", "held_out.tsv")                # exact match, token error rate, BLEU
    config, source_vocab, target_vocab, model = load("runs/pairs")
    decoder = Seq2SeqDecoder(model, config)                        # greedy / beam_search / sample

    train(Seq2SeqConfig(synthetic="addition", attention="dot", out="runs/addition"))
"""

import math
import random
from pathlib import Path

import keras

from seqkit import training
from seqkit.config import TASK_SEQ2SEQ as TASK
from seqkit.config import Seq2SeqConfig
from seqkit.errors import SeqkitError
from seqkit.io import check_data_exists, check_writable, write_text
from seqkit.plots import plot_panels
from seqkit.tasks.seq2seq.data import (
    SOURCE_VOCAB,
    TARGET_VOCAB,
    TEST_SIZE,
    build_vocabulary,
    encode_texts,
    eval_batches,
    load_vocabularies,
    pair_ids,
    read_pairs,
    take,
    train_batches,
)
from seqkit.tasks.seq2seq.model import (
    Seq2SeqDecoder,
    build_model,
    check_decoding,
    compile_model,
    decode_ids,
    default_max_length,
)
from seqkit.tasks.seq2seq.scores import sequence_scores
from seqkit.tasks.seq2seq.synthetic import synthetic_pairs
from seqkit.text.tokenize import detokenize, split
from seqkit.training import rundir
from seqkit.training.checkpoint import load_weights

EVAL_DIR = "eval"

__all__ = ["Seq2SeqConfig", "Seq2SeqDecoder", "evaluate", "generate", "load", "train"]


def training_pairs(config):
    """The pairs a run trains on: its pairs file, or ``size`` pairs of its synthetic task."""
    if config.synthetic:
        return synthetic_pairs(config.synthetic, config.size, config.seed, "train", config.digits, config.length)
    return read_pairs(config.data)


def plot_run(out, title):
    """loss.png from metrics.csv: the loss curves and, when recorded, the validation exact match."""
    metrics = {name: values for name, values in training.read_metrics(out).items()
               if not all(math.isnan(v) for v in values)}  # without validation its columns are "NA"
    curves = {name: metrics[name] for name in ("loss", "val_loss") if name in metrics}
    if not curves:
        return
    panels = [{"curves": curves, "ylabel": "cross-entropy (nats/token)", "title": title}]
    if "val_exact_match" in metrics:
        panels.append({"curves": {"val exact match": metrics["val_exact_match"]},
                       "ylabel": "exact match (greedy)", "title": "validation exact match"})
    plot_panels(Path(out) / "loss.png", panels, xlabel="epoch")


def train(config, resume=False, verbose="auto", callbacks=(), given=None):
    """Train an encoder-decoder and write its run directory (see ``seqkit.training.rundir``).

    ``callbacks``: more Keras callbacks; they see each epoch's
    ``val_exact_match``, and what they add to the logs goes into metrics.csv.
    ``resume`` and ``given``: as ``seqkit.tasks.char_lm.train``.

    Returns a dict with the run directory, the number of steps, the last
    epoch's logs (loss, val_loss, val_exact_match, ...) and ``val_scores``:
    exact match, token error rate and (word or space targets) BLEU of greedy
    decoding of the whole validation split (None without one).
    """
    config = rundir.resolve_config(config, resume, given)
    pairs = training_pairs(config)  # bad data fails before the run directory is made
    train_idx, val_idx = training.split_indices(len(pairs), config, noun="pairs")
    with rundir.run_directory(config.out, resume) as out:
        return train_in(out, config, resume, verbose, callbacks, pairs, train_idx, val_idx)


def train_in(out, config, resume, verbose, callbacks, pairs, train_idx, val_idx):
    """``train`` inside the run directory ``out``, held (locked) by the caller; ``pairs`` already read and split."""
    source_tokens = split(pairs.sources, config.source_tokens)
    target_tokens = split(pairs.targets, config.target_tokens)
    if source := rundir.vocabulary_dir(out, config, resume):  # this run's, or the --init-from run's: new tokens <unk>
        source_vocab, target_vocab = load_vocabularies(source)
    else:
        source_vocab = build_vocabulary(source_tokens, config.source_tokens, config.max_vocab)
        target_vocab = build_vocabulary(target_tokens, config.target_tokens, config.max_vocab)
    if not resume:
        config.max_target_length = max(len(t) for t in target_tokens)
    source_ids = [source_vocab.encode(s, unknown="map") for s in source_tokens]
    target_ids = [target_vocab.encode(t, unknown="map") for t in target_tokens]
    data = pair_ids(source_ids, target_ids)
    batches, per_pass, bounds = train_batches(take(data, train_idx), config.batch_size, config.seed,
                                              training.bucket_count(config, len(train_idx)))
    epochs, steps_per_epoch, start, complete = training.plan_run(out, config, per_pass, resume)
    if complete:
        return complete
    if not resume:
        source_vocab.save(out / SOURCE_VOCAB)
        target_vocab.save(out / TARGET_VOCAB)
    rundir.save_config(out, config, start["global_step"] if start else None)

    training.seed_everything(config.seed)
    with training.dtype_policy(config.dtype_policy):
        model = compile_model(build_model(config, len(source_vocab), len(target_vocab)), config)
    extra, callbacks, fit_kwargs = list(callbacks), [], {}
    val_sources = [source_ids[i] for i in val_idx]
    val_references = [target_tokens[i] for i in val_idx]
    if len(val_idx):
        fit_kwargs["validation_data"] = eval_batches(take(data, val_idx), config.batch_size, bounds)
        if config.val_decode:
            callbacks.append(DecodeScores(config, val_sources[: config.val_decode],
                                          [target_ids[i] for i in val_idx[: config.val_decode]],
                                          default_max_length(config)))
    last = training.train_run(model, batches, out, epochs, steps_per_epoch, start, [*callbacks, *extra], verbose,
                              **training.run_limits(config), **fit_kwargs)
    plot_run(out, f"{config.synthetic or Path(config.data).name} loss")
    val_scores = None
    if len(val_idx):
        outputs = decode_ids(Seq2SeqDecoder(model, config), val_sources, max_length=default_max_length(config),
                             batch_size=256)
        predictions = [target_vocab.decode(o[0][0]) for o in outputs]
        val_scores = sequence_scores(val_references, predictions, bleu=config.target_tokens != "char")
        rows = [(pairs.sources[i], pairs.targets[i], detokenize(p, config.target_tokens))
                for i, p in zip(val_idx, predictions)]
        write_scores(out, "val", {**val_scores, "decode": "greedy"}, rows)
    return {"run_dir": str(out), "steps": epochs * steps_per_epoch, **last, "val_scores": val_scores}


def load(path):
    """(config, source_vocab, target_vocab, model) of a trained encoder-decoder: a
    run directory, or a ``.keras`` file inside one (e.g. a checkpoint)."""
    run_dir, weights = rundir.run_paths(path)
    config = rundir.read_config(run_dir, Seq2SeqConfig, TASK)
    source_vocab, target_vocab = load_vocabularies(run_dir)
    model = build_model(config, len(source_vocab), len(target_vocab))
    return config, source_vocab, target_vocab, load_weights(model, weights)


def generate(path, inputs, decode="greedy", beam_width=5, length_penalty=1.0, max_length=None, temperature=1.0,
             top_k=0, top_p=1.0, seed=None, n_best=1, unknown="error", batch_size=64, on_output=None):
    """Decode each text of ``inputs`` with a trained encoder-decoder.

    Args:
        path: Run directory or ``.keras`` file (see ``load``).
        inputs: Source texts (tokenized as the run's sources); any iterable,
            read ``batch_size`` at a time (e.g. the lines of standard input).
        decode: ``greedy``, ``beam`` or ``sample``.
        beam_width, length_penalty: Beam search (see ``seqkit.decoding``);
            ``length_penalty`` is α in ``log p / steps^α``; ``beam_width`` at
            most ``MAX_BEAM_WIDTH``.
        max_length: Most decoding steps, ``</s>`` included (at most
            ``MAX_DECODE_LENGTH``); default twice the longest training target plus 2.
        temperature, top_k, top_p, seed: Sampling (as ``seqkit generate`` for
            char-LMs); None draws a random seed.
        n_best: Hypotheses per input (beam search only).
        unknown: Source tokens the vocabulary lacks: ``error`` or ``map`` (read as ``<unk>``).
        on_output: Called with each input's result as soon as its batch is decoded (streaming).

    Returns:
        One text per input; with ``n_best > 1``, one list of ``(text, score)`` per input, best first.
    """
    check_decoding(decode, max_length, beam_width, length_penalty, temperature, top_k, top_p, n_best, seed)
    if unknown not in ("error", "map"):
        raise SeqkitError(f"unknown `unknown` {unknown!r}; choose error or map")
    config, source_vocab, target_vocab, model = load(path)
    top_k = min(int(top_k), len(target_vocab))  # k >= V keeps every token
    decoder = Seq2SeqDecoder(model, config)
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    results, batch = [], []
    inputs = iter(inputs)
    while True:
        text = next(inputs, None)
        if text is not None:
            batch.append(text)
        if batch and (text is None or len(batch) == batch_size):
            source_ids, _ = encode_texts(batch, config.source_tokens, source_vocab, unknown, first=len(results) + 1)
            outputs = decode_ids(decoder, source_ids, decode, max_length or default_max_length(config), beam_width,
                                 length_penalty, temperature, top_k, top_p, seed + len(results), n_best, batch_size)
            for hypotheses in outputs:
                texts = [(detokenize(target_vocab.decode(ids), config.target_tokens), score)
                         for ids, score in hypotheses]
                results.append(texts[0][0] if n_best == 1 else texts)
                if on_output is not None:
                    on_output(results[-1])
            batch = []
        if text is None:
            break
    if not results:
        raise SeqkitError("no inputs to decode; pass `inputs` TEXT or lines on standard input")
    return results


def evaluate(path, data=None, decode="greedy", beam_width=5, length_penalty=1.0, max_length=None, batch_size=64):
    """Exact match, token error rate and (word or space targets) BLEU of decoding held-out pairs.

    BLEU is sacrebleu's, on 0-100, with its signature in ``bleu_signature``
    (``seqkit.tasks.seq2seq.scores``).

    ``data`` is a pairs file; for a synthetic task it may be None: up to ``TEST_SIZE``
    pairs of the run's task whose sources the training set cannot contain
    (``seqkit.tasks.seq2seq.data``). Writes ``eval/NAME.json`` and ``eval/NAME-predictions.tsv``
    into the run directory (NAME: the file's stem, or ``test``); their paths
    are in ``files``. Source tokens the vocabulary lacks read as ``<unk>``;
    their count is ``unknown_tokens``.
    """
    check_decoding(decode, max_length, beam_width, length_penalty, 1.0, 0, 1.0, 1)
    if decode == "sample":
        raise SeqkitError("evaluate scores greedy or beam decoding; pass `decode` greedy or beam")
    check_data_exists(data)
    config, source_vocab, target_vocab, model = load(path)
    check_writable(rundir.run_dir_of(path) / EVAL_DIR, "make the run directory writable, or evaluate a copy of it")
    if data:
        pairs, name = read_pairs(data), Path(data).stem
    elif config.synthetic:
        pairs = synthetic_pairs(config.synthetic, TEST_SIZE, config.seed, "test", config.digits, config.length,
                                at_most=True)
        name = "test"
    else:
        raise SeqkitError("nothing to evaluate on: pass `data` FILE, SOURCE<TAB>TARGET pairs held out from training")
    source_ids, unknown = encode_texts(pairs.sources, config.source_tokens, source_vocab, what=f"{pairs.name} pair")
    outputs = decode_ids(Seq2SeqDecoder(model, config), source_ids, decode, max_length or default_max_length(config),
                         beam_width, length_penalty, batch_size=batch_size)
    predictions = [target_vocab.decode(o[0][0]) for o in outputs]
    references = split(pairs.targets, config.target_tokens)
    scores = sequence_scores(references, predictions, bleu=config.target_tokens != "char")
    scores.update(unknown_tokens=unknown, decode=decode)
    if decode == "beam":
        scores.update(beam_width=beam_width, length_penalty=length_penalty)
    rows = [(s, t, detokenize(p, config.target_tokens)) for s, t, p in zip(pairs.sources, pairs.targets, predictions)]
    return {**scores, "files": write_scores(rundir.run_dir_of(path), name, scores, rows)}


class DecodeScores(keras.callbacks.Callback):
    """Adds ``val_exact_match`` and ``val_token_error_rate`` of greedy decoding
    of (the first ``val_decode``) validation pairs to each epoch's logs."""

    def __init__(self, config, source_ids, references, max_length):
        super().__init__()
        self.config, self.source_ids, self.references, self.max_length = config, source_ids, references, max_length

    def on_train_begin(self, logs=None):
        self.decoder = Seq2SeqDecoder(self.model, self.config)  # traced once, reads the current weights

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        outputs = decode_ids(self.decoder, self.source_ids, max_length=self.max_length, batch_size=256)
        scores = sequence_scores(self.references, [o[0][0] for o in outputs])
        logs["val_exact_match"] = scores["exact_match"]
        logs["val_token_error_rate"] = scores["token_error_rate"]


def write_scores(run_dir, name, scores, rows=None):
    """``eval/NAME.json`` and, with ``rows`` (source, reference, prediction), ``eval/NAME-predictions.tsv``."""
    folder = Path(run_dir) / EVAL_DIR
    folder.mkdir(exist_ok=True)
    files = [folder / f"{name}.json"]
    rundir.write_json(files[0], scores)
    if rows is not None:
        files.append(folder / f"{name}-predictions.tsv")
        lines = ["source\treference\tprediction"] + ["\t".join(" ".join(v.split()) for v in row) for row in rows]
        write_text(files[1], "\n".join(lines) + "\n")
    return [str(f) for f in files]
