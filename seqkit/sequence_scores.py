r"""Scores of predicted token sequences against references: exact match, token error rate, BLEU.

* exact match: the share of predictions equal to their reference, token for token;
* token error rate: ``Σ edit distance / Σ reference length`` over the corpus,
  the Levenshtein distance counting substitutions, insertions and deletions
  of tokens (the word / character error rate of speech recognition);
* BLEU (Papineni et al. 2002), corpus level, one reference per example:

.. math::

    \text{BLEU} = \text{BP} \cdot \exp\Big(\tfrac14 \textstyle\sum_{n=1}^4 \log p_n\Big), \quad
    \text{BP} = \min(1, e^{1 - r / c})

where ``p_n`` is the clipped n-gram precision summed over the corpus, ``r``
the total reference length and ``c`` the total prediction length. No
smoothing: a corpus without a single matching 4-gram scores 0.
"""

import math
from collections import Counter


def edit_distance(a, b):
    """Levenshtein distance between token sequences ``a`` and ``b`` (unit costs)."""
    previous = list(range(len(b) + 1))  # distances from a[:0] to each prefix of b
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1,  # delete x
                               current[j - 1] + 1,  # insert y
                               previous[j - 1] + (x != y)))  # substitute (or keep)
        previous = current
    return previous[-1]


def ngrams(tokens, n):
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(references, predictions, max_n=4):
    """Corpus BLEU in [0, 1] of ``predictions`` against ``references`` (lists of token lists)."""
    matches, totals = [0] * max_n, [0] * max_n
    for reference, prediction in zip(references, predictions):
        for n in range(1, max_n + 1):
            found, wanted = ngrams(prediction, n), ngrams(reference, n)
            matches[n - 1] += sum(min(count, wanted[gram]) for gram, count in found.items())
            totals[n - 1] += max(len(prediction) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    r, c = sum(len(x) for x in references), sum(len(x) for x in predictions)
    brevity = 1.0 if c >= r else math.exp(1 - r / c)
    return brevity * math.exp(log_precision)


def sequence_scores(references, predictions, bleu=False):
    """``exact_match``, ``token_error_rate`` (and ``bleu``) of ``predictions`` against
    ``references``, both lists of token lists, plus the counts behind them."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions; "
                         "pass one of each per example")
    if not references:
        raise ValueError("no examples to score; pass at least one reference and prediction")
    exact = sum(list(r) == list(p) for r, p in zip(references, predictions))
    errors = sum(edit_distance(r, p) for r, p in zip(references, predictions))
    tokens = sum(len(r) for r in references)
    scores = {"examples": len(references), "exact_match": exact / len(references),
              "token_error_rate": errors / max(tokens, 1), "edit_distance": errors, "reference_tokens": tokens}
    if bleu:
        scores["bleu"] = corpus_bleu(references, predictions)
    return scores
