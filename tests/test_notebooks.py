"""Run every notebook's cells (the literate tests) through pytest, one test per notebook.

Cells flagged `#| slow` or `#| cuda` are skipped unless MOCO_TEST_FLAGS names them (e.g. MOCO_TEST_FLAGS="slow").
Each notebook runs in its own process, so one notebook's globals, models or threads never leak into another: a child
forked from a server that has already imported torch, transformers and moco (tests/nbfork.py: saves each notebook the
2.5-3.5 s of imports), or a fresh interpreter for the notebooks in `FRESH` and wherever the server cannot start
(MOCO_TEST_FORK=0 forces fresh interpreters for all).
"""
import json, os, select, signal, subprocess, sys, tempfile, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT / 'nbs').parts))

RUNNER = """
import sys
from nbdev.test import test_nb
from pathlib import Path
ok, secs = test_nb(Path(sys.argv[1]), skip_flags=sys.argv[2].split(), force_flags=sys.argv[3].split())
print(f'{secs:.1f}s'); sys.exit(0 if ok else 1)
"""

# notebooks that assert on what an import pulls into `sys.modules`, or set environment variables that modules read when
# imported: a forked child has those modules imported already, so these run in a fresh interpreter. And 04d_lean, which
# asserts that two code paths give bit-identical logits: in forked children (another heap layout) it failed 2 runs in
# 11, with logits 6e-6 apart (likely a BLAS kernel chosen by buffer alignment; not profiled); 17 of 17 passed fresh
FRESH = {'00a_providers', '60_run', '02e_load', '04_engines', '04a_vllm', '04b_openai', '03a_sandbox', '03c_judges', '07a_ray',
         '04d_lean'}
TIMEOUT = 1800

class ForkServer:
    "tests/nbfork.py as a child process: `run(nb, skip, force)` -> (exit status, output)."
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).with_name('nbfork.py'))], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, cwd=os.getcwd())
        self.fd, self.buf = self.p.stdout.fileno(), b''
        try: self.ready = (self._read(300) or {}).get('ready', False)
        except (RuntimeError, ValueError): self.ready = False       # it could not start: the notebooks run in fresh interpreters

    def _read(self, timeout):
        "The server's next JSON line, or None after `timeout` seconds (unbuffered: two lines arriving at once are both kept)."
        end = time.monotonic() + timeout
        while b'\n' not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]: return None
            chunk = os.read(self.fd, 65536)
            if not chunk: raise RuntimeError('the notebook fork server exited')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def run(self, nb, skip, force, timeout=TIMEOUT):
        with tempfile.NamedTemporaryFile('r', suffix='.log') as out:
            req = dict(nb=str(nb), skip=skip, force=force, out=out.name, env=dict(os.environ))
            self.p.stdin.write((json.dumps(req) + '\n').encode()); self.p.stdin.flush()
            got = self._read(60)
            if got is None: raise RuntimeError('the notebook fork server did not fork within 60 s')
            pid = got['pid']
            ans = self._read(timeout)
            if ans is None:
                os.kill(pid, signal.SIGKILL); ans = self._read(60)
                return 'timeout', out.read()
            return ans['rc'], out.read()

    def close(self):
        self.p.stdin.close()
        try: self.p.wait(timeout=60)
        except subprocess.TimeoutExpired: self.p.kill()

@pytest.fixture(scope='module')
def fork_server():
    if os.environ.get('MOCO_TEST_FORK', '1') == '0': yield None; return
    srv = ForkServer()
    yield srv if srv.ready else None
    srv.close()

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT / 'nbs')) for p in NBS])
def test_notebook(nb, fork_server):
    force = os.environ.get('MOCO_TEST_FLAGS', '').split()
    skip = [f for f in ('slow', 'cuda') if f not in force]
    if fork_server is not None and nb.stem not in FRESH:
        rc, out = fork_server.run(nb, skip, force)
        assert rc == 0, f"{nb.name} failed (forked from the notebook server; exit {rc}):\n{out[-6000:]}"
        return
    r = subprocess.run([sys.executable, '-c', RUNNER, str(nb), ' '.join(skip), ' '.join(force)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"{nb.name} failed:\n{r.stderr[-6000:]}"

def _nb(path, *cells):
    "A minimal notebook with these code cells."
    path.write_text(json.dumps({'cells': [{'cell_type': 'code', 'id': f'c{i}', 'metadata': {}, 'source': s, 'outputs': [],
                                           'execution_count': None} for i, s in enumerate(cells)],
                                'metadata': {'kernelspec': {'name': 'python3', 'language': 'python', 'display_name': 'Python 3'}},
                                'nbformat': 4, 'nbformat_minor': 5}))
    return path

def test_the_fork_server_isolates_notebooks_and_reports_their_failures(tmp_path):
    srv = ForkServer()
    try:
        assert srv.ready, 'the fork server refused to start (an OpenMP thread after its imports?)'
        leak = _nb(tmp_path / 'leak.ipynb', "import moco, torch\nmoco._leaked = 1\nassert (torch.ones(256, 256) @ torch.ones(256, 256)).sum().item() == 256 ** 3")
        check = _nb(tmp_path / 'check.ipynb', "import moco, torch\nassert not hasattr(moco, '_leaked')\nassert (torch.ones(256, 256) @ torch.ones(256, 256)).sum().item() == 256 ** 3")
        bad = _nb(tmp_path / 'bad.ipynb', "raise ValueError('this notebook fails')")
        assert srv.run(leak, [], [])[0] == 0
        assert srv.run(check, [], [])[0] == 0          # the first child's module state and OpenMP threads stayed in it
        rc, out = srv.run(bad, [], [])
        assert rc != 0 and 'this notebook fails' in out
        assert srv.run(check, [], [])[0] == 0          # the server goes on after a failure
        rc, out = srv.run(tmp_path / 'missing.ipynb', [], [], timeout=120)   # a child that fails at once: both answers arrive together
        assert rc not in (0, 'timeout'), (rc, out)
    finally: srv.close()
