"""The compiled recurrence kernels (recurrence.cc) and how they are built.

``load()`` compiles recurrence.cc once per machine with the system's C++
compiler against the installed TensorFlow's headers, caches the library and
loads it with ``tf.load_op_library``; it returns None (and seqkit's fused
layers keep their XLA loops) when there is no compiler, the build fails or
``SEQKIT_KERNELS=0``. The build takes about 10 s, runs the first time a
seqkit layer trains, and is reused after (the cache key covers the source,
TensorFlow's version and flags, the compiler and the CPU).

Environment:
    SEQKIT_KERNELS=0        never use the kernels (the XLA loops run instead).
    SEQKIT_KERNEL_CACHE     where built libraries go (default
                            ``$XDG_CACHE_HOME/seqkit/kernels`` or ``~/.cache/seqkit/kernels``).
    CXX                     the compiler (default ``g++``, then ``c++``).
"""

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("recurrence.cc")
log = logging.getLogger("seqkit")

# Tried in order: -march=native lets the compiler use the CPU's widest vectors
# (the AVX-512 kernel in recurrence.cc); AVX-512 FP16 is left off because
# TensorFlow's copy of Eigen does not compile with it on GCC 12.
ARCH_FLAGS = [["-march=native", "-mno-avx512fp16"], ["-march=native"], []]


def cache_dir():
    if os.environ.get("SEQKIT_KERNEL_CACHE"):
        return Path(os.environ["SEQKIT_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqkit" / "kernels"


def compiler():
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(tf, cxx):
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), tf.__version__, *tf_flags, version, _cpu_flags()]).encode()
    ).hexdigest()[:16]
    target = cache_dir() / key / "recurrence.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("seqkit: compiling the recurrence kernels (once, about 10 s) into %s", target.parent)
    errors = ""
    for arch in ARCH_FLAGS if platform.machine() in ("x86_64", "AMD64") else [["-march=native"], []]:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".recurrence-", suffix=".so")
        os.close(fd)
        cmd = [cxx, "-shared", "-fPIC", "-O3", "-w", *arch, str(SOURCE), "-o", tmp, *tf_flags]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode == 0:
            os.replace(tmp, target)  # atomic: a concurrent build or a crash never leaves half a library
            return target
        os.unlink(tmp)
        errors = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
    raise RuntimeError(f"{cxx} failed: {errors[0]}")


@functools.cache
def load():
    """The kernels' op module (``tf.load_op_library``), or None when they cannot be had."""
    if os.environ.get("SEQKIT_KERNELS", "1") == "0":
        return None
    cxx = compiler()
    if not cxx:
        log.info("seqkit: no C++ compiler found; the fused layers use their XLA loops")
        return None
    import tensorflow as tf

    try:
        return tf.load_op_library(str(_build(tf, cxx)))
    except Exception as e:  # noqa: BLE001 - any failure leaves the XLA loops, which are correct
        log.warning("seqkit: recurrence kernels unavailable (%s); the fused layers use their XLA loops", e)
        return None
