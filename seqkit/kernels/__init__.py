"""The compiled recurrence kernels (recurrence.cc) and how they are built.

``load()`` compiles recurrence.cc once per machine with the system's C++
compiler against the installed TensorFlow's headers, caches the library and
loads it with ``tf.load_op_library``; it returns None (and seqkit's fused
layers keep their XLA loops) when there is no compiler, the build fails or
``SEQKIT_KERNELS=0``. The build takes about 10 s, runs the first time a
seqkit layer trains, and is reused after (the cache key covers the source,
this file, TensorFlow's version and flags, the compiler and the CPU). A
failed build is remembered in a ``failed`` file beside the entry, so later
processes do not compile again (delete it to retry).

Environment:
    SEQKIT_KERNELS=0        never use the kernels (the XLA loops run instead; also false, no, off).
    SEQKIT_KERNEL_ISA       the instruction set the kernels are built for: ``avx512``,
                            ``avx2`` (AVX2 + FMA) or ``generic`` (portable C++, any CPU);
                            default: the best this CPU has. A path the CPU cannot run
                            is refused (a warning, and the XLA loops run).
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
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("recurrence.cc")
log = logging.getLogger("seqkit")

ISAS = ("avx512", "avx2", "generic")

# The compiler flags of each instruction-set path, tried in order; a set is
# tried only when the build before it failed over its flags (an older
# compiler, an unknown CPU), not for any other failure. -march=native lets the
# compiler use the CPU's own extensions; AVX-512 FP16 is left off because
# TensorFlow's copy of Eigen does not compile with it on GCC 12. The avx2 path
# switches AVX-512 off, so an AVX-512 machine builds and runs it too; generic
# compiles recurrence.cc's portable tile (SEQKIT_KERNEL_GENERIC), vectorised by
# the compiler for whatever the CPU has.
X86_FLAGS = {
    "avx512": [["-march=native", "-mno-avx512fp16"], ["-march=native"]],
    "avx2": [["-march=native", "-mno-avx512f"], ["-mavx2", "-mfma"]],
    "generic": [["-march=native", "-mno-avx512f", "-DSEQKIT_KERNEL_GENERIC"], ["-DSEQKIT_KERNEL_GENERIC"]],
}
OTHER_FLAGS = [["-march=native", "-DSEQKIT_KERNEL_GENERIC"], ["-DSEQKIT_KERNEL_GENERIC"]]  # ARM64 and the rest
ARCH_ERROR = re.compile(r"march|mno-|avx|FP16|fma|unrecognized|unknown argument", re.IGNORECASE)


def _x86():
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def cpu_isas():
    """The instruction-set paths this CPU can run, best first."""
    if not _x86():
        return ["generic"]
    flags = set(_cpu_flags().split())
    return [isa for isa, needs in (("avx512", {"avx512f"}), ("avx2", {"avx2", "fma"})) if needs <= flags] + ["generic"]


def isa():
    """The path to build: ``$SEQKIT_KERNEL_ISA`` or the best this CPU has.
    ValueError when the variable names no path or one this CPU cannot run."""
    asked = os.environ.get("SEQKIT_KERNEL_ISA", "").strip().lower()
    if not asked:
        return cpu_isas()[0]
    if asked not in ISAS:
        raise ValueError(f"SEQKIT_KERNEL_ISA={asked} is not one of {', '.join(ISAS)}; unset it for the best this CPU has")
    if asked not in cpu_isas():
        raise ValueError(
            f"SEQKIT_KERNEL_ISA={asked}: this CPU cannot run it (it has {', '.join(cpu_isas())}); "
            "pick one of those or unset the variable"
        )
    return asked


def arch_flags(path):
    """The flag sets to try for ``path``, in order."""
    return X86_FLAGS[path] if _x86() else OTHER_FLAGS


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


def _tf_flags(tf):
    """The installed TensorFlow's compile and link flags for a custom op."""
    return tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()


def _library_path(tf, cxx):
    """Where the library for this source, build recipe (this file), TensorFlow,
    compiler and CPU lives."""
    tf_flags = _tf_flags(tf)
    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    path = isa()
    parts = [SOURCE.read_text(), Path(__file__).read_text(), tf.__version__, *tf_flags, *cxx, version, _cpu_flags(), path]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return cache_dir() / f"{path}-{key}" / "recurrence.so"


def _first_error(stderr, returncode):
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [f"exit status {returncode}"])[0].strip()


class BuildInterrupted(RuntimeError):
    """The compiler was stopped (a timeout, or killed by a signal: out of memory, say), not refused the source."""


def _compile(tf, cxx, target):
    """Compiles recurrence.cc into ``target`` (atomically); RuntimeError naming the compiler's first error."""
    log.info("seqkit: compiling the recurrence kernels (once, about 10 s) into %s", target.parent)
    tf_flags = _tf_flags(tf)
    first = None  # the first failure: the one to report (later flag sets are fallbacks)
    for arch in arch_flags(isa()):
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
        if result.returncode < 0:  # killed by a signal: nothing was learnt about the source
            raise BuildInterrupted(f"{' '.join(cxx)} was stopped by signal {-result.returncode}")
        first = first or result
        if not ARCH_ERROR.search(result.stderr):
            break
    raise RuntimeError(f"{' '.join(cxx)} failed: {_first_error(first.stderr, first.returncode)}")


def _build(tf, cxx):
    """The cached library, compiled first if it is not there yet. A build that
    failed leaves a ``failed`` file with its error beside it, and later
    processes give up at once instead of compiling again (delete the file to
    retry; any change of source, TensorFlow, compiler or CPU retries anyway).
    A compiler that was stopped (timeout, signal) leaves no such file: the next process tries again."""
    target = _library_path(tf, cxx)
    failed = target.with_name("failed")
    if target.exists():
        return target
    if failed.exists():
        raise RuntimeError(f"{failed.read_text().strip()} (an earlier build; delete {failed} to try again)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise PermissionError(target.parent)
    except OSError:
        # An unwritable cache: build into a new private directory, for this process only
        # (a shared, predictable folder would let another user plant a library here).
        target = Path(tempfile.mkdtemp(prefix="seqkit-kernels-")) / target.name
    try:
        return _compile(tf, cxx, target)
    except (BuildInterrupted, subprocess.TimeoutExpired):
        raise
    except RuntimeError as e:
        try:
            failed.write_text(str(e).splitlines()[0] + "\n")
        except OSError:
            pass
        raise


def disabled():
    return os.environ.get("SEQKIT_KERNELS", "1").strip().lower() in ("0", "false", "no", "off")


_lock = threading.Lock()


@functools.cache
def _load():
    if disabled():
        return None
    cxx = compiler()
    if not cxx:
        log.info("seqkit: no C++ compiler found (set CXX); the fused layers train with their XLA loops")
        return None
    import tensorflow as tf

    try:
        for _ in range(2):  # a cached library that does not load (damaged) is built again, once
            path = _build(tf, cxx)
            try:
                return tf.load_op_library(str(path))
            except Exception as e:  # noqa: BLE001
                path.unlink(missing_ok=True)
                error = e
        # It builds but does not load (a libstdc++ mismatch, say): remember, as a failed build.
        path.with_name("failed").write_text(f"{path} does not load: {str(error).splitlines()[0]}\n")
        raise error
    except Exception as e:  # noqa: BLE001 - any failure leaves the XLA loops, which are correct
        log.warning("seqkit: recurrence kernels unavailable (%s); the fused layers train with their XLA loops", e)
        return None


def load():
    """The kernels' op module (``tf.load_op_library``), or None when they cannot be had.
    Built at most once per process, even when replicas trace in several threads."""
    with _lock:
        return _load()


def variant():
    """What the loaded kernels were built for, e.g. ``"isa=avx2 panel=16
    tile_rows=6"`` (recurrence.cc's tile shape), or None without kernels."""
    ops = load()
    return None if ops is None else ops.seqkit_kernel_variant().numpy().decode()
