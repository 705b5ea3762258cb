"""Helpers of ``bench_detectors.py``: threads, peak memory, isolated workers, tables.

Import this module only after the thread environment variables are set
(``bench_detectors.py`` does it first thing), because it imports NumPy.
"""

import gc
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

GIB = 2**30
MIB = 2**20

# Keeps the threadpoolctl limit alive for the life of the process.
_THREADPOOL_LIMITS = []


# ------------------------------------------------------------------ threads
def limit_threads(n_threads):
    """Cap torch, every BLAS / OpenMP runtime loaded so far, and faiss at n."""
    try:
        import torch

        torch.set_num_threads(n_threads)
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n_threads)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits

    _THREADPOOL_LIMITS.append(threadpool_limits(limits=n_threads))


def thread_report():
    """One line per thread pool: ``user_api/internal_api=threads (library)``."""
    from threadpoolctl import threadpool_info

    pools = [
        f"{p['internal_api']}={p['num_threads']} ({os.path.basename(p['filepath'])})"
        for p in threadpool_info()
    ]
    try:
        import torch

        pools.append(f"torch={torch.get_num_threads()}")
    except ImportError:
        pass
    return ", ".join(pools)


# ------------------------------------------------------------------- memory
def _status_kib(field, pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(pid="self"):
    """Resident set size of a process (Linux ``/proc``), None elsewhere."""
    kib = _status_kib("VmRSS", pid)
    return None if kib is None else kib * 1024


def vmsize_bytes():
    kib = _status_kib("VmSize")
    return None if kib is None else kib * 1024


def _can_reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


CAN_RESET_HWM = _can_reset_hwm()


def _load_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory():
    """Collect garbage and hand freed heap pages back to the OS (glibc).

    Without this, memory freed by an earlier run (e.g. the untimed warm-up of
    the same detector) stays resident in malloc's heap, the next run reuses
    it, and its RSS rise understates what it needs in a fresh process.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


MEMORY_METHOD = (
    "kernel RSS high-water mark (VmHWM, reset through /proc/self/clear_refs) "
    "minus the RSS before fit (freed heap pages handed back by malloc_trim "
    "first)"
    if CAN_RESET_HWM
    else "RSS sampled every 2 ms by a background thread, minus the RSS before fit"
)


class PeakRSS:
    """Peak resident memory above the starting RSS while the block runs.

    Counts everything the process touches (NumPy, torch, BLAS and faiss
    allocations alike), unlike ``tracemalloc``. On Linux the kernel's own
    high-water mark is reset at entry (exact); elsewhere a thread samples RSS.
    ``peak`` is None where RSS cannot be read.
    """

    def __enter__(self):
        release_free_memory()
        self.start = rss_bytes()
        self.peak = None
        self._sampled = self.start or 0
        self._stop = threading.Event()
        self._thread = None
        if CAN_RESET_HWM:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = rss_bytes()
        elif self.start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._sampled = max(self._sampled, rss_bytes() or 0)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.start is None:
            return False
        if CAN_RESET_HWM:
            high = _status_kib("VmHWM") * 1024
        else:
            self._stop.set()
            self._thread.join()
            high = max(self._sampled, rss_bytes() or 0)
        self.peak = max(0, high - self.start)
        return False


def available_memory_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


# ----------------------------------------------------------------- failures
def describe_exception(exc):
    """Short failure text; allocation failures of every library -> MemoryError."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    alloc = ("can't allocate memory", "DefaultCPUAllocator", "out of memory")
    if isinstance(exc, MemoryError) or any(a in text for a in alloc):
        return "MemoryError"
    return f"{type(exc).__name__}: {text[:120]}"


def set_address_space_cap(extra_bytes):
    """RLIMIT_AS = current virtual size + extra (None lifts the soft limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if extra_bytes is None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return
    vm = vmsize_bytes()
    if vm is None:
        return
    limit = vm + int(extra_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


# ------------------------------------------------------------------ workers
START, DONE = "@@START ", "@@DONE "


def worker_announce_start(name):
    print(START + json.dumps({"pair": name, "rss": rss_bytes()}), flush=True)


def worker_announce_done(name, result):
    print(DONE + json.dumps({"pair": name, "result": result}), flush=True)


def _reader(stream, out):
    for line in stream:
        out.put(line)
    out.put(None)


def run_isolated(script, spec, pairs, *, timeout, mem_cap, log=print):
    """Run ``pairs`` in worker subprocesses of ``script`` and collect results.

    One worker runs the pairs one after the other (``script --worker
    spec.json``) and prints ``@@START`` / ``@@DONE`` lines. The parent kills
    it when the running pair exceeds ``timeout`` seconds or its RSS grows
    more than ``mem_cap`` bytes above the worker's RSS at the pair's start
    (the worker also caps its own address space, so most overruns end as a
    clean ``MemoryError`` first); the pair is then recorded as failed and a
    fresh worker takes the remaining pairs. Returns ``{pair: result}``; a
    result has ``fit_s``, ``score_s``, ``peak``, ``error``, ``scores_file``.
    """
    results = {}
    remaining = list(pairs)
    with tempfile.TemporaryDirectory(prefix="bench_ood_") as tmp:
        attempt = 0
        while remaining:
            attempt += 1
            spec_i = dict(spec, pairs=remaining, outdir=tmp, mem_cap=mem_cap)
            spec_file = os.path.join(tmp, f"spec{attempt}.json")
            with open(spec_file, "w") as f:
                json.dump(spec_i, f)
            err_file = open(os.path.join(tmp, f"stderr{attempt}.txt"), "w+")
            proc = subprocess.Popen(
                [sys.executable, script, "--worker", spec_file],
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
                bufsize=1,
            )
            lines = queue.Queue()
            threading.Thread(
                target=_reader, args=(proc.stdout, lines), daemon=True
            ).start()
            current, started, base_rss, failure = None, time.time(), None, None
            startup_limit = max(timeout, 600)
            eof = False
            while True:
                try:
                    line = lines.get(timeout=0.05)
                except queue.Empty:
                    line = ""
                if line is None:
                    eof = True
                elif line.startswith(START):
                    msg = json.loads(line[len(START) :])
                    current, started, base_rss = msg["pair"], time.time(), msg["rss"]
                elif line.startswith(DONE):
                    msg = json.loads(line[len(DONE) :])
                    results[msg["pair"]] = msg["result"]
                    remaining.remove(msg["pair"])
                    current = None
                    started = time.time()
                elif line:
                    log("    [worker] " + line.rstrip())
                if eof and proc.poll() is not None:
                    break
                elapsed = time.time() - started
                rss = rss_bytes(proc.pid) if proc.poll() is None else None
                if current is not None and elapsed > timeout:
                    failure = f"timeout (> {timeout:g} s)"
                elif current is None and remaining and elapsed > startup_limit:
                    failure = f"worker start-up timeout (> {startup_limit:g} s)"
                elif (
                    current is not None
                    and rss is not None
                    and base_rss is not None
                    and rss - base_rss > mem_cap
                ):
                    failure = f"killed: RSS grew > {mem_cap / GIB:.1f} GiB"
                if failure:
                    proc.kill()
                    proc.wait()
                    break
            proc.wait()
            err_file.seek(0)
            stderr_tail = err_file.read()[-2000:]
            err_file.close()
            if not remaining:
                break
            if failure is None:
                code = proc.returncode
                if code is not None and code < 0:
                    sig = signal.Signals(-code).name
                    failure = f"killed by {sig}" + (
                        " (kernel OOM killer?)" if sig == "SIGKILL" else ""
                    )
                else:
                    tail = stderr_tail.strip().splitlines()[-1:] or [""]
                    failure = f"crashed (exit {code}): {tail[0][:100]}"
            victim = current if current is not None else None
            if victim is None:
                # Died before starting a pair: give up on all remaining.
                for name in remaining:
                    results[name] = {"error": failure, "stage": "start-up"}
                if stderr_tail.strip():
                    log("    [worker stderr] " + stderr_tail.strip()[-500:])
                break
            results[victim] = {"error": failure, "stage": "fit/score"}
            remaining.remove(victim)
        # Load the scores before the temporary directory goes away.
        for res in results.values():
            path = res.pop("scores_file", None)
            if path and os.path.exists(path):
                res["scores"] = np.load(path)
    return results


# ------------------------------------------------------------- comparisons
def compare_scores(ours, theirs_aligned):
    """``(max |diff|, max |diff| / range(ours), spearman, rankings_equal)``."""
    from scipy.stats import rankdata, spearmanr

    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs_aligned, dtype=np.float64)
    if a.shape != b.shape:
        return None
    finite = np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a - b)
    max_diff = float(diff[finite].max()) if finite.any() else float("nan")
    span = float(np.ptp(a[finite])) if finite.any() else float("nan")
    rel = max_diff / span if span > 0 else float("nan")
    if not finite.all():
        max_diff = float("inf")
    rho = float(spearmanr(a, b).statistic)
    equal = bool(np.array_equal(rankdata(a), rankdata(b)))
    return max_diff, rel, rho, equal


# ------------------------------------------------------------------ tables
def fmt_seconds(s):
    if s is None:
        return "-"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 10:
        return f"{s:.1f}"
    if s >= 0.01:
        return f"{s:.2f}"
    return f"{s * 1e3:.2f}ms"


def fmt_mib(b):
    if b is None:
        return "-"
    return f"{b / MIB:.0f}"


def fmt_table(header, rows):
    """Plain-text table with columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    sep = "  "
    out = [sep.join(str(h).ljust(w) for h, w in zip(header, widths))]
    out.append(sep.join("-" * w for w in widths))
    for r in rows:
        out.append(sep.join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)
