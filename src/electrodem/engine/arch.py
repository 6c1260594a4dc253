"""Taichi initialisation: backend, precision and seed, done once per process at run time.

Nothing in ``electrodem.engine`` touches Taichi at import time; `init` is the one place that calls
``ti.init``. Calling `init` again with equal options is a no-op. Calling it with different options
raises `EngineInitError`, because ``ti.init`` frees every field and ndarray and would silently
invalidate live simulations; pass ``reinit=True`` to accept that (live `Simulation` objects then
refuse to run, with a clear message, instead of crashing).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from electrodem.config import ConfigError
from electrodem.config.errors import is_integer, require_known_keys

ARCHS = ("cpu", "gpu", "cuda", "vulkan")
PRECISIONS = ("f64", "f32")
CPU_THREADS_ENV = "ELECTRODEM_CPU_THREADS"
"""Environment variable giving the CPU thread count when ``cpu_threads`` is ``None``. Taichi ignores
``OMP_NUM_THREADS``; this one reaches every engine a process (or its child processes: the CLI run by
the integration tests) starts, which is how the test suite runs at a chosen thread count."""


log = logging.getLogger("electrodem.engine")


class EngineInitError(RuntimeError):
    """Taichi is already initialised with other options (see `init`)."""


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs (not what it simulates).

    Parameters
    ----------
    arch : ``cpu`` (default), ``gpu`` (any GPU Taichi finds), ``cuda`` or ``vulkan``.
    precision : ``f64`` (default, what tests use) or ``f32`` (faster on GPUs; overlaps of stiff
        contacts lose digits, so check the overlap guard).
    seed : seed of Taichi's random generator (the engine itself is deterministic).
    cpu_threads : CPU worker threads; ``None`` takes ``$ELECTRODEM_CPU_THREADS`` if set, else every
        core (`effective_cpu_threads` tells what Taichi runs with).
    offline_cache : keep compiled kernels on disk between processes (saves compile time).
    debug : Taichi bounds checking (slow; for development).
    """

    arch: str = "cpu"
    precision: str = "f64"
    seed: int = 0
    cpu_threads: int | None = None
    offline_cache: bool = True
    debug: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError("engine.arch", self.arch, f"one of {ARCHS}")
        if self.precision not in PRECISIONS:
            raise ConfigError("engine.precision", self.precision, f"one of {PRECISIONS}")
        if not is_integer(self.seed) or self.seed < 0:
            raise ConfigError("engine.seed", self.seed, "an integer >= 0")
        if self.cpu_threads is not None and (not is_integer(self.cpu_threads) or self.cpu_threads < 1):
            raise ConfigError("engine.cpu_threads", self.cpu_threads, "null or an integer >= 1")
        for key in ("offline_cache", "debug"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"engine.{key}", getattr(self, key), "true or false")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineOptions:
        """Build from a plain mapping (e.g. a Hydra config node converted to a dict)."""
        require_known_keys(d, cls.__dataclass_fields__, "engine")
        return cls(**d)


GPU_ARCHS = {
    "gpu": ("cuda", "vulkan", "metal", "opengl", "gles", "dx11", "dx12", "amdgpu"),
    "cuda": ("cuda",),
    "vulkan": ("vulkan",),
}
"""Taichi architectures (``Arch.name``) that satisfy each non-CPU ``arch`` option."""
_ARCH_LABELS = {"gpu": "GPU (CUDA, Vulkan, Metal or OpenGL)", "cuda": "CUDA", "vulkan": "Vulkan"}
PROBE_TIMEOUT_S = 120.0
"""Wall-clock limit (s) of the backend probe: importing Taichi and starting a GPU context take a few
seconds; a probe that hangs longer than this counts as no usable device."""
_PROBE_MARK = "ELECTRODEM_PROBE_ARCH="
# The child initialises the backend and launches two of Taichi's own kernels (fill, to_numpy): a
# device that initialises but cannot run a kernel is no more usable than one that is absent. No
# offline cache, so the probe writes nothing to disk.
_PROBE_CODE = f"""
import os, sys
os.environ.setdefault("TI_ENABLE_TORCH", "0")
import taichi as ti
ti.init(arch=getattr(ti, sys.argv[1]), offline_cache=False, log_level=ti.ERROR)
x = ti.field(ti.f32, shape=4)
x.fill(1.0)
assert float(x.to_numpy().sum()) == 4.0, "kernel result wrong"
print({_PROBE_MARK!r} + ti.lang.impl.current_cfg().arch.name, flush=True)
"""


@functools.cache
def probe_backend(arch: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when Taichi can run kernels on backend ``arch`` here, else one line saying what was found.

    ``cpu`` is always usable (no probe). Other backends are tried in a child process, because Taichi
    does not fail cleanly without the device: ``arch=gpu`` without a GPU driver dies with a
    segmentation fault inside ``ti.init`` (after "libcuda.so lib not found"), ``cuda`` and ``vulkan``
    fall back to the CPU with a warning. Run it before any compute, so that a run that cannot have
    its device stops before placement. The result is cached per process (the hardware does not change
    during a run); ``timeout_s`` bounds the child (s).
    """
    if arch == "cpu":
        return None
    if arch not in GPU_ARCHS:
        return f"unknown arch {arch!r}; one of {ARCHS}"
    label = _ARCH_LABELS[arch]
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE_CODE, arch], capture_output=True, text=True,
                           timeout=timeout_s, env={**os.environ, "TI_ENABLE_TORCH": "0"})
    except subprocess.TimeoutExpired:
        return f"no usable {label} device: the probe (taichi init in a child process) did not finish " \
               f"within {timeout_s:.0f} s"
    except OSError as e:
        return f"the backend probe could not start a child process ({e})"
    found = [ln[len(_PROBE_MARK):].strip() for ln in p.stdout.splitlines() if ln.startswith(_PROBE_MARK)]
    if p.returncode == 0 and found:
        if found[0] in GPU_ARCHS[arch]:
            return None
        cpu = " the CPU," if found[0] in ("x64", "arm64") else ""
        return f"no {label} device found (taichi fell back to{cpu} {found[0]})"
    last = next((ln.strip() for ln in reversed(p.stderr.splitlines()) if ln.strip()), "")
    last = f"; last message: {last[:160]}" if last else ""
    if p.returncode < 0:
        try:
            sig = f", {signal.Signals(-p.returncode).name}"
        except ValueError:
            sig = ""
        return f"no usable {label} device: taichi's init crashed (probe child exited with " \
               f"{p.returncode}{sig}){last}"
    return f"no usable {label} device: the probe child exited with {p.returncode}{last}"


_current: EngineOptions | None = None
_generation = 0


def init(options: EngineOptions | None = None, *, reinit: bool = False) -> EngineOptions:
    """Initialise Taichi for the engine and return the options in force.

    Equal options: no-op. Different options: `EngineInitError` unless ``reinit=True``.
    """
    global _current, _generation, SERIAL_LOOPS
    options = options or EngineOptions()
    if _current is not None:
        if options == _current:
            return _current
        if not reinit:
            raise EngineInitError(
                f"Taichi is already initialised with {_current}; asked for {options}. Re-initialising frees "
                "every live simulation; call init(options, reinit=True) to do it anyway."
            )
    import taichi as ti

    arch = {"cpu": ti.cpu, "gpu": ti.gpu, "cuda": ti.cuda, "vulkan": ti.vulkan}[options.arch]
    kwargs: dict[str, Any] = dict(
        arch=arch,
        default_fp=ti.f64 if options.precision == "f64" else ti.f32,
        default_ip=ti.i32,
        random_seed=options.seed,
        offline_cache=options.offline_cache,
        debug=options.debug,
        log_level=ti.WARN,
        # IEEE arithmetic, no fast-math contraction or reassociation: LLVM's fast-math choices differ
        # between the serial and the parallel form of a loop (`SERIAL_LOOPS`), and with the host CPU's
        # instruction set. Measured: ~3 % per step on a 404-particle bed.
        fast_math=False,
    )
    threads = options.cpu_threads if options.cpu_threads is not None else env_cpu_threads()
    if threads is not None:
        kwargs["cpu_max_num_threads"] = threads
    os.environ.setdefault("TI_ENABLE_TORCH", "0")
    ti.init(**kwargs)
    if options.arch != "cpu" and ti.lang.impl.current_cfg().arch == ti.cpu:
        # Taichi falls back to the CPU silently when no GPU is found; say so instead.
        raise EngineInitError(f"engine.arch={options.arch!r} requested but Taichi found no such device")
    _current = options
    _generation += 1
    # Read by the kernels when they compile, which a re-initialisation makes them do again.
    SERIAL_LOOPS = options.arch == "cpu" and effective_cpu_threads() == 1
    log.info(
        "engine: arch=%s precision=%s cpu_threads=%s (asked: %s)",
        options.arch, options.precision, effective_cpu_threads(), threads if threads is not None else "all",
    )
    return options


SERIAL_LOOPS = False
"""Whether the engine's kernels run their particle loops in the calling thread (``ti.loop_config(
serialize=True)``). True on the CPU backend at one thread: Taichi still hands every parallel loop to its
thread pool then, and the hand-over (a condition-variable round trip, 50-90 us per loop on the 2-core
VMs measured) dwarfed the work of small systems: 8 spheres took 245 us per step, of which ~200 us were
three such hand-overs (47 us per step serial). The loops do the same IEEE arithmetic in the same order
either way (the engine is bitwise independent of the thread count, and compiled without fast-math),
so the results are identical: a settled bed at one thread (serial) and two (parallel) matched bit for
bit."""


def env_cpu_threads() -> int | None:
    """The thread count ``$ELECTRODEM_CPU_THREADS`` asks for (None when unset or empty)."""
    raw = os.environ.get(CPU_THREADS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(CPU_THREADS_ENV, raw, "unset or an integer >= 1 (engine CPU threads)")
    return int(raw)


def effective_cpu_threads() -> int | None:
    """CPU worker threads Taichi runs with (None before `init` or on a GPU backend)."""
    if _current is None or _current.arch != "cpu":
        return None
    import taichi as ti

    return int(ti.lang.impl.current_cfg().cpu_max_num_threads)


def current_options() -> EngineOptions | None:
    """The options Taichi was initialised with, or None before `init`."""
    return _current


def generation() -> int:
    """Counter bumped by every (re-)initialisation; objects holding Taichi memory compare it."""
    return _generation


def ensure_init() -> EngineOptions:
    """Initialise with default options if nothing did yet; return the options in force."""
    return _current if _current is not None else init(EngineOptions())


def real_dtype() -> Any:
    """Taichi float type of the current precision."""
    import taichi as ti

    opts = ensure_init()
    return ti.f64 if opts.precision == "f64" else ti.f32


def numpy_real() -> Any:
    """NumPy float type of the current precision."""
    import numpy as np

    return np.float64 if ensure_init().precision == "f64" else np.float32


def options_dict() -> dict[str, Any]:
    """JSON-able description of the options in force (for run metadata), with the thread count
    Taichi actually runs with (``cpu_threads_effective``)."""
    return {**asdict(ensure_init()), "cpu_threads_effective": effective_cpu_threads()}
