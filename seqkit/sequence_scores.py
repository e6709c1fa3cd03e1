r"""Scores of predicted token sequences against references: exact match, token error rate, BLEU.

* exact match: the share of predictions equal to their reference, token for token;
* token error rate: ``Σ edit distance / Σ reference length`` over the corpus,
  the Levenshtein distance counting substitutions, insertions and deletions
  of tokens (the word / character error rate of speech recognition), computed
  by rapidfuzz (``rapidfuzz.distance.Levenshtein``, unit costs);
* BLEU (Papineni et al. 2002), corpus level, one reference per example:

.. math::

    \text{BLEU} = \text{BP} \cdot \exp\Big(\tfrac14 \textstyle\sum_{n=1}^4 \log p_n\Big), \quad
    \text{BP} = \min(1, e^{1 - r / c})

where ``p_n`` is the clipped n-gram precision summed over the corpus, ``r``
the total reference length and ``c`` the total prediction length. No
smoothing: a corpus without a single matching 4-gram scores 0.

rapidfuzz is given each token as an int id (``token_ids``), not the token:
it compares the elements of a list by their hash, so raw tokens could match
by accident (``"a"`` and ``97``; ``0`` and ``2**61 - 1``, which hash alike).
"""

import math
from collections import Counter

from rapidfuzz.distance import Levenshtein


def token_ids(*corpora):
    """Each corpus (a list of token sequences) with its tokens replaced by ints:
    equal tokens get the same id in every corpus, distinct tokens distinct ids."""
    ids = {}
    return [[[ids.setdefault(token, len(ids)) for token in tokens] for tokens in corpus] for corpus in corpora]


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
    errors = sum(Levenshtein.distance(r, p) for r, p in zip(*token_ids(references, predictions)))
    tokens = sum(len(r) for r in references)
    scores = {"examples": len(references), "exact_match": exact / len(references),
              "token_error_rate": errors / max(tokens, 1), "edit_distance": errors, "reference_tokens": tokens}
    if bleu:
        scores["bleu"] = corpus_bleu(references, predictions)
    return scores
