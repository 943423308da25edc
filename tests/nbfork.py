"""A fork server for the notebook tests: one interpreter imports what nearly every notebook imports (torch, transformers,
moco, nbdev's runner) once, then forks a fresh child per notebook.

Why: each notebook used to start its own interpreter, and importing torch, transformers and moco took 2.5-3.5 s of the
3-12 s most notebooks take (about 80 notebooks: 3-4 minutes of the default suite). A forked child starts with those
modules already imported and still gets its own globals, models, threads and exit, like a fresh interpreter.

Safe because the server never runs a tensor operation: GNU OpenMP (torch's thread pool) is not fork-safe once a
parallel region has run, so a child would hang at its first one; OpenBLAS (numpy's) shuts its threads down at fork.
The server checks that its imports after numpy's started no thread (GNU OpenMP names its workers like the process, so
it counts them); when they did it refuses, and the tests fall back to one interpreter per notebook. Notebooks that check what an import pulls in (`sys.modules`)
or that set environment variables read at import time keep a fresh interpreter (`FRESH` in tests/test_notebooks.py).

Protocol (one request at a time, JSON lines): the test writes {"nb", "skip", "force", "out", "env"}; the server forks,
answers {"pid"}, waits, answers {"rc"}. The child writes its stdout and stderr to `out`.
"""
import json, os, sys


def _threads() -> list:
    "Names of this process's OS threads."
    out = []
    for t in os.listdir('/proc/self/task'):
        try: out.append(open(f'/proc/self/task/{t}/comm').read().strip())
        except OSError: pass
    return out


def _child(req: dict) -> None:
    "Run one notebook in this forked process and exit with its status (never returns to the server loop)."
    fd = os.open(req['out'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1); os.dup2(fd, 2); os.close(fd)
    os.environ.clear(); os.environ.update(req['env'])
    rc = 1
    try:
        from pathlib import Path
        from nbdev.test import test_nb
        ok, secs = test_nb(Path(req['nb']), skip_flags=req['skip'], force_flags=req['force'])
        print(f'{secs:.1f}s (forked)')
        rc = 0 if ok else 1
    except BaseException:
        import traceback; traceback.print_exc()
    finally:
        try:
            import atexit; atexit._run_exitfuncs()   # what an interpreter's normal exit would run
        except BaseException: pass
        try: sys.stdout.flush(); sys.stderr.flush()
        except BaseException: pass
        os._exit(rc)


def serve():
    "Import the common modules, then answer requests on stdin until it closes."
    import numpy                                   # noqa: F401  (OpenBLAS starts its threads here; it shuts them down at fork)
    before = len(_threads())
    import torch, transformers                     # noqa: F401  (no tensor op here: see the module docstring)
    import importlib, pkgutil, moco
    for m in pkgutil.walk_packages(moco.__path__, 'moco.'):   # every moco module (none imports ray, vllm or trl)
        try: importlib.import_module(m.name)
        except Exception: pass                     # the notebook that needs it reports the error itself
    from nbdev.test import test_nb                 # noqa: F401
    import execnb.shell                            # noqa: F401
    started = len(_threads()) - before             # an OpenMP pool (or any thread) an import started: forking is not safe
    print(json.dumps({'ready': started == 0, 'threads': _threads()}), flush=True)
    if started: return
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0: _child(req)
        print(json.dumps({'pid': pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({'rc': os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == '__main__': serve()
