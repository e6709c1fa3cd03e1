"""Classification and regression scores, and their text form.

Classification scores come from scikit-learn (``sklearn.metrics``), with
``zero_division=0``: a class never predicted has precision 0, a class absent
from the true labels has recall 0, and F1 is 0 where precision + recall is 0.
Macro-F1 is the unweighted mean of F1 over the classes that occur in the true
or the predicted labels: ``f1_score(average="macro")`` without ``labels=``,
which averages over exactly those (with ``labels=`` every class, a class
absent from both would count as an F1 of 0). scikit-learn is imported when
scores are computed, not with this module: with SciPy it takes about 0.6 s,
which ``import seqkit`` and the CLI's start-up should not pay.
"""


import numpy as np


def classification_scores(y_true, y_pred, labels):
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix.

    ``y_true``, ``y_pred``: class ids in ``range(len(labels))`` (any shape;
    several outputs per example, as in the copy task, are scored one symbol
    at a time).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.ravel(y_true), np.ravel(y_pred)
    if y_true.size == 0:
        raise ValueError("no examples to score; pass at least one label and prediction")
    classes = np.arange(len(labels))
    outside = np.setdiff1d(np.concatenate([y_true, y_pred]), classes)  # scikit-learn would drop them unsaid
    if outside.size:
        raise ValueError(f"class ids {outside.tolist()} outside 0..{len(labels) - 1}: there are {len(labels)} labels")
    matrix = confusion_matrix(y_true, y_pred, labels=classes)  # (C, C): row = true class, column = predicted
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                                     zero_division=0)
    return {
        "examples": int(y_true.size),
        "accuracy": float(np.trace(matrix) / y_true.size),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "classes": [
            {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        ],
        "labels": list(labels),
        "confusion": matrix.tolist(),
    }


def regression_scores(y_true, y_pred):
    """MSE, and the MSE of the best constant prediction (the targets' mean) as the baseline."""
    y_true, y_pred = np.ravel(y_true).astype(np.float64), np.ravel(y_pred).astype(np.float64)
    return {
        "examples": int(y_true.size),
        "mse": float(np.mean((y_pred - y_true) ** 2)),
        "baseline_mse": float(np.var(y_true)),
    }


def format_scores(scores):
    """The scores as text: a summary line, then per-class table and confusion matrix."""
    if "mse" in scores:
        return (f"mse {scores['mse']:.4f}  baseline mse {scores['baseline_mse']:.4f} (predicting the mean)  "
                f"over {scores['examples']:,} examples\n")
    lines = [f"accuracy {scores['accuracy']:.4f}  macro-F1 {scores['macro_f1']:.4f}  "
             f"over {scores['examples']:,} {'symbols' if 'sequence_accuracy' in scores else 'examples'}"]
    if "sequence_accuracy" in scores:
        lines[0] += f"  (whole sequences right: {scores['sequence_accuracy']:.4f})"
    labels = scores["labels"]
    width = max(8, *(len(label) for label in labels)) + 2
    lines.append("")
    lines.append("class".ljust(width) + "precision  recall     f1  support")
    for c in scores["classes"]:
        lines.append(f"{c['label']:<{width}}{c['precision']:9.4f} {c['recall']:7.4f} {c['f1']:6.4f} "
                     f"{c['support']:8d}")
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    cell = max(width, max(len(str(v)) for row in scores["confusion"] for v in row) + 2)
    lines.append(" " * width + "".join(label.rjust(cell) for label in labels))
    for label, row in zip(labels, scores["confusion"]):
        lines.append(label.ljust(width) + "".join(str(v).rjust(cell) for v in row))
    return "\n".join(lines) + "\n"
