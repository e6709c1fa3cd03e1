"""What the benchmark scripts share: docs/benchmarks.md sections, progress lines, list options."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu_model():
    """The CPU's model name with its family/model numbers and vector ISA (/proc/cpuinfo; a VM often
    names only the vendor line, e.g. "AMD EPYC"), or the platform's word for it."""
    import platform

    fields = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2 + FMA, no AVX-512" if {"avx2", "fma"} <= flags
           else "no AVX2")
    return f"{fields['model name']} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; {isa})"


# Environment variables that hold the competitors' math libraries to an older instruction set, so that an
# AVX-512 machine can time them as an AVX2 one would run them (oneDNN: TensorFlow and PyTorch; MKL:
# PyTorch's BLAS; OpenBLAS: NumPy's). XLA and TensorFlow's Eigen kernels are not held: they keep what they
# were compiled for.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE")


def settings(names):
    """``NAME=value`` for each of ``names`` set (non-empty) in the environment."""
    return [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]


def isa_limits():
    """The ISA_LIMITS set in the environment, "NAME=value, ..." ("" when none is)."""
    return ", ".join(settings(ISA_LIMITS))


def machine_heading(heading, isa):
    """``heading`` keyed by the compute path and the machine, "HEADING (avx2 path, CPU)": a run replaces
    the section of its own path on its own CPU model and leaves those of other machines. A run with
    the libraries held to an older ISA (``isa_limits``) is its own section, named with the limits."""
    limits = isa_limits()
    return f"{heading} ({isa} path, {cpu_model()}{'; libraries at ' + limits if limits else ''})"


def log(msg):
    """A progress line on stderr (stdout carries the report)."""
    print(msg, file=sys.stderr, flush=True)


def choices_list(parser, text, allowed, what):
    """The comma list ``text`` as a list, each item one of ``allowed``; else ``parser.error``."""
    items = [x for x in text.split(",") if x]
    for x in items:
        if x not in allowed:
            parser.error(f"unknown {what} {x!r}; choose from {', '.join(allowed)}")
    return items


def write_report(path, heading, script, argv, details, text):
    """The section ``heading``: the command that produced it (``[SETTINGS] python scripts/SCRIPT ARGV``, the
    settings being seqkit's kernel variables and ISA_LIMITS where set), ``details`` after it on the same
    line, then ``text``."""
    environment = settings(("SEQKIT_KERNELS", "SEQKIT_KERNEL_ISA", *ISA_LIMITS))  # so the command reproduces it
    command = " ".join([*environment, f"python scripts/{script}", *argv])
    write_section(path, heading, f"{heading}\n\n`{command}`{details}\n\n{text}")


def write_section(path, heading, section):
    """Put ``section`` (starting with the line ``heading``) into ``path``: replace the old one, or append."""
    from seqkit.io import write_text

    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section.rstrip("\n") + ("\n\n" + text[end + 1 :] if end >= 0 else "")
    write_text(path, text.rstrip("\n") + "\n")
