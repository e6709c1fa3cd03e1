r"""Scores of predicted token sequences against references: exact match, token error rate, BLEU.

* exact match: the share of predictions equal to their reference, token for token;
* token error rate: ``Σ edit distance / Σ reference length`` over the corpus,
  the Levenshtein distance counting substitutions, insertions and deletions
  of tokens (the word / character error rate of speech recognition), computed
  by rapidfuzz (``rapidfuzz.distance.Levenshtein``, unit costs);
* BLEU (Papineni et al. 2002), corpus level, one reference per example,
  computed by sacrebleu (``sacrebleu.metrics.BLEU``) on its 0-100 scale,
  reported with sacrebleu's signature of the settings:

.. math::

    \text{BLEU} = 100 \cdot \text{BP} \cdot \exp\Big(\tfrac14 \textstyle\sum_{n=1}^4 \log p_n\Big), \quad
    \text{BP} = \min(1, e^{1 - r / c})

where ``p_n`` is the clipped n-gram precision summed over the corpus, ``r``
the total reference length and ``c`` the total prediction length. No
smoothing (``smooth_method="none"``): a corpus without a single matching
4-gram scores 0.

Both libraries are given each token as an int id (``token_ids``), not the
token. rapidfuzz compares the elements of a list by their hash, so raw
tokens could match by accident (``"a"`` and ``97``; ``0`` and ``2**61 - 1``,
which hash alike). sacrebleu reads text and splits it at whitespace, so a
token holding a space (``" "`` of character targets, ``"a b"``) would vanish
or split; it gets the ids joined by spaces, with its own tokenizer off
(``tokenize="none"``): the n-grams are those of the run's tokens.
"""


from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU


def token_ids(*corpora):
    """Each corpus (a list of token sequences) with its tokens replaced by ints:
    equal tokens get the same id in every corpus, distinct tokens distinct ids."""
    ids = {}
    return [[[ids.setdefault(token, len(ids)) for token in tokens] for tokens in corpus] for corpus in corpora]


def corpus_bleu(references, predictions):
    """``(score, signature)``: sacrebleu's corpus BLEU-4 on 0-100 of ``predictions``
    against ``references`` (lists of token lists), and its signature string."""
    references, predictions = token_ids(references, predictions)
    bleu = BLEU(tokenize="none", smooth_method="none")
    score = bleu.corpus_score([" ".join(map(str, ids)) for ids in predictions],
                              [[" ".join(map(str, ids)) for ids in references]])  # one reference stream
    return score.score, str(bleu.get_signature())


def sequence_scores(references, predictions, bleu=False):
    """``exact_match``, ``token_error_rate`` (and ``bleu``, ``bleu_signature``) of ``predictions``
    against ``references``, both lists of token lists, plus the counts behind them."""
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
        scores["bleu"], scores["bleu_signature"] = corpus_bleu(references, predictions)
    return scores
