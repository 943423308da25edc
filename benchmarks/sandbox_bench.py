"""Sandbox start-up overhead: 100 trivial programs through `run_python`, this tree's sandbox vs a baseline commit's.

    PYTHONPATH=. python benchmarks/sandbox_bench.py [--n 100] [--ref e33da4a] [--policies cpu,gpu] [--out FILE]

All sandboxes run in the same process, interleaved in blocks of 10 programs (so all see the same machine load),
one program at a time. Each program is `pass`: its wall time is the sandbox's start-up and tear-down overhead.
The load average is printed before and after. Target (sandbox issue): this tree <= 1.5x the baseline.
'baseline+ew' is the baseline with one change: its parent waits for the child's exit with a pidfd (as this tree
does) instead of `Popen.wait(timeout)`, which polls with sleeps of up to 50 ms and so rounds every run up to the
next poll; comparing with it isolates the cost of the new isolation layers from that gain.
The baseline's sandbox module is read with `git show REF:<path>`; its relative imports are pointed at `moco`.
"""
import argparse, importlib, os, re, select, statistics, subprocess, sys, time, types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = 'e33da4a'   # the last commit before the PID-namespace sandbox
PATHS = ('moco/scoring/sandbox.py', 'moco/sandbox.py')


def current():
    "This tree's sandbox module (an editable install elsewhere may also provide one: skip it)."
    for path in PATHS:
        if (ROOT / path).exists():
            mod = importlib.import_module(path[:-3].replace('/', '.'))
            if Path(mod.__file__).resolve() == (ROOT / path).resolve(): return mod
    raise SystemExit(f'no moco sandbox module of {ROOT} imported (run with PYTHONPATH={ROOT})')


class _EventPopen(subprocess.Popen):
    "Popen whose wait(timeout) wakes when the process exits (a pidfd) instead of polling every few ms."
    def wait(self, timeout=None):
        if timeout is not None and self.returncode is None:
            fd = os.pidfd_open(self.pid)
            try:
                if not select.select([fd], [], [], timeout)[0]: raise subprocess.TimeoutExpired(self.args, timeout)
            finally: os.close(fd)
        return super().wait()


def baseline(ref, event_wait=False):
    for path in PATHS:
        r = subprocess.run(['git', 'show', f'{ref}:{path}'], cwd=ROOT, capture_output=True, text=True)
        if r.returncode == 0: break
    else: raise SystemExit(f'no sandbox module at {ref}')
    src = re.sub(r'^from \.+', 'from moco.', r.stdout, flags=re.M)
    name = f"sandbox_{ref}{'_event_wait' if event_wait else ''}"
    mod = types.ModuleType(name); mod.__file__ = f'{ref}:{path}'
    sys.modules[name] = mod                  # dataclasses look their module up
    exec(compile(src, mod.__file__, 'exec'), mod.__dict__)
    if event_wait:                           # the same sandbox, but its parent no longer polls for the exit
        mod.subprocess = types.SimpleNamespace(**{**vars(subprocess), 'Popen': _EventPopen})
    return mod


def bench(mods, n, gpu, block=10):
    "Per-program wall times (s) for each module, interleaved in blocks."
    times = {k: [] for k in mods}
    for k, m in mods.items():                       # warm-up: one-off probes (lru_cache) and page cache
        r = m.run_python('pass', gpu=gpu)
        assert r.ok, (k, r)
    for _ in range(0, n, block):
        for k, m in mods.items():
            for _ in range(block):
                t = time.perf_counter(); r = m.run_python('pass', gpu=gpu); times[k].append(time.perf_counter() - t)
                assert r.ok, (k, r)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=100)
    ap.add_argument('--ref', default=BASELINE)
    ap.add_argument('--policies', default='cpu,gpu')
    ap.add_argument('--out', default=None, help='also write the report to this file')
    a = ap.parse_args()
    mods = {'baseline': baseline(a.ref), 'baseline+ew': baseline(a.ref, event_wait=True), 'this tree': current()}
    lines = [f"# PYTHONPATH=. python benchmarks/sandbox_bench.py --n {a.n} --ref {a.ref}   ({os.cpu_count()} cpus, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, euid {os.geteuid()})"]
    def say(s): print(s, flush=True); lines.append(s)
    say(f"baseline: {mods['baseline'].__file__}; this tree: {mods['this tree'].__file__}")
    for policy in a.policies.split(','):
        load0 = os.getloadavg()
        times = bench(mods, a.n, gpu=policy == 'gpu')
        load1 = os.getloadavg()
        r = mods['this tree'].run_python('pass', gpu=policy == 'gpu')
        say(f"[{policy} policy] load average before {load0[0]:.2f} / after {load1[0]:.2f} (1 min)")
        for k, t in times.items():
            say(f"  {k:11}: median {1e3 * statistics.median(t):6.1f} ms, mean {1e3 * statistics.mean(t):6.1f} ms, "
                f"p90 {1e3 * sorted(t)[int(0.9 * len(t))]:6.1f} ms over {len(t)} programs")
        for ref in ('baseline', 'baseline+ew'):
            med = statistics.median(times['this tree']) / statistics.median(times[ref])
            mean = statistics.mean(times['this tree']) / statistics.mean(times[ref])
            say(f"  this tree / {ref}: {med:.2f}x (median), {mean:.2f}x (mean) (target <= 1.5x) -> "
                f"{'OK' if max(med, mean) <= 1.5 else 'FAIL'}")
        say(f"  layers now: {', '.join(r.layers)}")
    if a.out: Path(a.out).write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
