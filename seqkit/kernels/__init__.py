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
    CXX                     the compiler command (default ``g++``, then ``c++``).
"""

import functools
import hashlib
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("recurrence.cc")
log = logging.getLogger("seqkit")

# Tried in order: -march=native lets the compiler use the CPU's widest vectors
# (the AVX-512 kernel in recurrence.cc); AVX-512 FP16 is left off because
# TensorFlow's copy of Eigen does not compile with it on GCC 12. The next set
# is tried only when a build fails over these flags (an older compiler, an
# unknown CPU), not for any other failure.
ARCH_FLAGS = [["-march=native", "-mno-avx512fp16"], ["-march=native"], []]
ARCH_ERROR = re.compile(r"march|mno-|avx512|FP16|unrecognized|unknown argument", re.IGNORECASE)


def cache_dir():
    if os.environ.get("SEQKIT_KERNEL_CACHE"):
        return Path(os.environ["SEQKIT_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqkit" / "kernels"


def compiler():
    """The compiler command as a list (``$CXX`` may carry arguments), or None."""
    if os.environ.get("CXX"):
        return shlex.split(os.environ["CXX"])
    found = shutil.which("g++") or shutil.which("c++")
    return [found] if found else None


def _cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _library_path(tf, cxx):
    """Where the library for this source, TensorFlow, compiler and CPU lives."""
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), tf.__version__, *tf_flags, *cxx, version, _cpu_flags()]).encode()
    ).hexdigest()[:16]
    return cache_dir() / key / "recurrence.so"


def _build(tf, cxx):
    """The cached library, compiled first if it is not there yet."""
    target = _library_path(tf, cxx)
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: build into the temporary directory instead
        target = Path(tempfile.gettempdir()) / f"seqkit-kernels-{os.getuid()}" / target.parent.name / target.name
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
    log.info("seqkit: compiling the recurrence kernels (once, about 10 s) into %s", target.parent)
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    for arch in ARCH_FLAGS if platform.machine() in ("x86_64", "AMD64") else [["-march=native"], []]:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".recurrence-", suffix=".so")
        os.close(fd)
        try:
            cmd = [*cxx, "-shared", "-fPIC", "-O3", "-w", *arch, str(SOURCE), "-o", tmp, *tf_flags]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if result.returncode == 0:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())  # the data is on disk before the name is
                os.replace(tmp, target)  # atomic: a concurrent build or a crash never leaves half a library
                return target
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        if not (arch and ARCH_ERROR.search(result.stderr)):
            break
    raise RuntimeError(f"{' '.join(cxx)} failed: {error}")


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
        path = _build(tf, cxx)
        try:
            return tf.load_op_library(str(path))
        except Exception:  # noqa: BLE001 - a damaged cached library: build it again, once
            path.unlink(missing_ok=True)
            return tf.load_op_library(str(_build(tf, cxx)))
    except Exception as e:  # noqa: BLE001 - any failure leaves the XLA loops, which are correct
        log.warning("seqkit: recurrence kernels unavailable (%s); the fused layers use their XLA loops", e)
        return None
