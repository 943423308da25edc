"""Sandbox and code-scoring tests: hostile programs never escape, benign ones still work, real benchmark rows score right.

Fast (about 20 s on 2 cores). Real-data tests read ../shared/data/moco (or $MOCO_DATA_DIR) and skip when it is absent.
"""
import importlib.util, json, os, time
from pathlib import Path

import pytest

from moco.core import Example, ScoringError
from moco.scoring.sandbox import extract_code, run_many, run_python
from moco.scoring.codescore import score_coding, score_kernel_bench, score_many, score_smdd

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get('MOCO_DATA_DIR') or ROOT.parent / 'shared' / 'data' / 'moco')
HAS_RDKIT = importlib.util.find_spec('rdkit') is not None
ADD = Example(id='demo/add', input='Write add.\nYour code should pass this test case: assert add(1, 2) == 3',
              fields={'test': 'def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n'})
TIMEOUT = 2.0


def answer(top_level: str) -> str:
    "A correct `add` preceded by some top-level code, as a model would write it."
    return f"Here you go:\n```python\n{top_level}\n\ndef add(a, b):\n    return a + b\n```"


# ---------------------------------------------------------------- hostile code

@pytest.fixture
def traps(tmp_path):
    "Files and paths outside the sandbox that hostile code tries to create, change or delete."
    victim = tmp_path / 'victim.txt'; victim.write_text('keep me')
    victim_dir = tmp_path / 'victim_dir'; victim_dir.mkdir(); (victim_dir / 'f').write_text('x')
    home_target = Path.home() / '.moco-sandbox-test-pwned'
    home_target.unlink(missing_ok=True)
    yield dict(victim=str(victim), victim_dir=str(victim_dir), mark=str(tmp_path / 'escaped'), home=str(home_target))
    assert victim.read_text() == 'keep me' and (victim_dir / 'f').exists(), 'a file outside the sandbox was changed'
    assert not (tmp_path / 'escaped').exists(), 'a command ran outside the sandbox'
    assert not home_target.exists(), 'the home directory was written'


FRESH_FORK_EXEC = ("import importlib.util as u, os\nm = u.module_from_spec(u.find_spec('_posixsubprocess'))\nr, w = os.pipe()\n"
                   "m.fork_exec([b'/usr/bin/touch', b'{mark}'], [b'/usr/bin/touch'], True, (w,), None, None, -1, -1, -1, -1, "
                   "-1, -1, r, w, False, False, -1, None, None, None, -1, None, False)")

HOSTILE = {  # name: (top-level code, expected reason(s))
    'socket connect': ("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)", {'blocked: network'}),
    'http request': ("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)", {'blocked: network'}),
    'dns lookup': ("import socket\nsocket.getaddrinfo('example.com', 80)", {'blocked: network'}),
    'fork bomb': ("import os\nwhile True:\n    os.fork()", {'blocked: process'}),
    'multiprocessing': ("import multiprocessing as mp\np = mp.Process(target=print)\np.start(); p.join()", {'blocked: process'}),
    'fresh fork_exec': (FRESH_FORK_EXEC, {'PermissionError', 'blocked: process'}),
    'memory bomb': ("x = bytearray(8 << 30)", {'MemoryError'}),
    'memory creep': ("x = []\nwhile True:\n    x.append(bytearray(64 << 20))", {'MemoryError', 'timeout'}),  # slow VMs page slowly
    'infinite loop': ("while True:\n    pass", {'timeout'}),
    'sleep forever': ("import time\ntime.sleep(1000)", {'timeout'}),
    'write home': ("open({home!r}, 'w').write('pwned')", {'blocked: filesystem'}),
    'write outside tmp': ("open({mark!r}, 'w').write('pwned')", {'blocked: filesystem'}),
    'append to a file outside': ("open({victim!r}, 'a').write('pwned')", {'blocked: filesystem'}),
    'delete a file outside': ("import os\nos.remove({victim!r})", {'blocked: filesystem'}),
    'rename a file outside': ("import os\nos.rename({victim!r}, 'stolen')", {'blocked: filesystem'}),
    'rmtree outside': ("import shutil\nshutil.rmtree({victim_dir!r})", {'blocked: filesystem'}),
    'symlink escape': ("import os\nos.symlink({victim!r}, 'link')\nopen('link', 'w').write('pwned')", {'blocked: filesystem'}),
    'hard link escape': ("import os\nos.link({victim!r}, 'link')\nopen('link', 'w').write('pwned')", {'blocked: filesystem'}),
    'subprocess': ("import subprocess\nsubprocess.run(['touch', {mark!r}])", {'blocked: process'}),
    'os.system': ("import os\nos.system('touch {mark}')", {'blocked: process'}),
    'os.exec': ("import os\nos.execv('/usr/bin/touch', ['touch', {mark!r}])", {'blocked: process'}),
    'ctypes': ("import ctypes\nctypes.CDLL(None).system(b'touch {mark}')", {'blocked: ctypes'}),
    'signal the parent': ("import os\nos.kill(os.getppid(), 0)", {'blocked: process'}),
    'raise limits': ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", {'blocked: limits', 'ValueError'}),
    'read parent env': ("import os\nprint(open(f'/proc/{{os.getppid()}}/environ').read())", {'blocked: read'}),
    'read ssh keys': ("print(open({ssh!r}).read())", {'blocked: read'}),
}


@pytest.mark.parametrize('name', list(HOSTILE))
def test_hostile_answer_scores_zero_without_escaping(name, traps):
    code, reasons = HOSTILE[name]
    code = code.format(**traps, ssh=str(Path.home() / '.ssh' / 'id_rsa'))
    start = time.monotonic()
    score = score_coding(answer(code), ADD, timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + 3
    assert score.value == 0 and score.detail in reasons, score


def test_secrets_in_the_parent_environment_are_invisible(monkeypatch):
    monkeypatch.setenv('MOCO_TEST_SECRET', 'hunter2-secret')
    r = run_python("import os\nprint(sorted(os.environ))\nprint(os.environ.get('MOCO_TEST_SECRET'))\n"
                   "print(open(f'/proc/{os.getppid()}/environ').read())")
    assert 'hunter2-secret' not in r.stdout + r.stderr
    assert "['HOME', 'LANG', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'PATH', 'TMPDIR']" in r.stdout
    assert r.reason == 'blocked: read'
    # an answer that would return a wrong sum if it could see the secret still passes: it cannot
    leak = "import os\ndef add(a, b):\n    return a + b + len(os.environ.get('MOCO_TEST_SECRET', ''))"
    assert score_coding(f"```python\n{leak}\n```", ADD).value == 1


def test_swallowed_violations_are_still_reported():
    r = run_python("import socket\ntry:\n    socket.socket()\nexcept OSError:\n    print('carried on')")
    assert r.ok and r.stdout.strip() == 'carried on' and r.blocked == ('network',)


def test_output_flood_is_truncated_and_finishes():
    r = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", timeout=1, max_output=4096)
    assert r.timed_out and len(r.stdout) < 6000 and 'bytes cut' in r.stdout


def test_timeout_kills_the_whole_process_group():
    # gpu policy allows subprocesses: a background child must die with the sandbox
    r = run_python("import subprocess, time\nprint(subprocess.Popen(['sleep', '30']).pid, flush=True)\ntime.sleep(30)",
                   timeout=1, gpu=True)
    assert r.timed_out and r.duration < 5
    pid = int(r.stdout.split()[0])
    for _ in range(50):
        try: state = Path(f'/proc/{pid}/status').read_text().split('State:')[1].split()[0]
        except (FileNotFoundError, IndexError): return           # gone
        if state == 'Z': return                                  # killed, waiting to be reaped
        time.sleep(0.05)
    pytest.fail(f'a child of the sandbox survived the timeout (pid {pid})')


def test_gpu_policy_keeps_network_and_filesystem_closed(tmp_path):
    "With exec allowed, a shell still cannot write outside the temp dir or reach the network (kernel layers)."
    mark = tmp_path / 'shell-escaped'
    r = run_python("import subprocess\nr = subprocess.run(['sh', '-c', 'touch " + str(mark) + "; echo wrote > inside.txt; cat inside.txt'],"
                   " capture_output=True, text=True)\nprint(r.stdout, r.stderr)", gpu=True)
    if 'readonly_fs' not in r.layers: pytest.skip(f'no mount namespace on this machine (layers: {r.layers})')
    assert not mark.exists() and 'wrote' in r.stdout
    r = run_python("import subprocess, sys\nr = subprocess.run([sys.executable, '-c', 'import socket; "
                   "socket.create_connection((\"1.1.1.1\", 53), timeout=2)'], capture_output=True, text=True)\n"
                   "print(r.returncode, r.stderr[-200:])", gpu=True)
    assert r.stdout.split()[0] != '0', r.stdout


# ---------------------------------------------------------------- benign code still works

def test_ordinary_programs_work():
    r = run_python("""
import sys, json, re, math, itertools, collections, functools, heapq, bisect, fractions, decimal, datetime, random
import statistics, string, tempfile, threading, pathlib, io, csv, typing, dataclasses, enum, copy, hashlib
import numpy as np
sys.setrecursionlimit(10000)
def depth(n): return 0 if n == 0 else 1 + depth(n - 1)
pathlib.Path('sub').mkdir(); pathlib.Path('sub/a.txt').write_text('hello')
with tempfile.NamedTemporaryFile('w', delete=False) as f: f.write('tmp')
out = []
t = threading.Thread(target=lambda: out.append(np.linalg.solve(np.eye(3), np.ones(3)).sum())); t.start(); t.join()
print(depth(5000), pathlib.Path('sub/a.txt').read_text(), open(f.name).read(), out[0], math.comb(10, 3))
print('err', file=sys.stderr)
""")
    assert r.ok, r
    assert r.stdout.split() == ['5000', 'hello', 'tmp', '3.0', '120'] and r.stderr == 'err'
    assert {'audit_hook', 'rlimits'} <= set(r.layers)


def test_run_many_keeps_order_and_runs_in_parallel():
    start = time.monotonic()
    rs = run_many([f"import time\ntime.sleep(0.5)\nprint({i})" for i in range(4)], workers=4)
    assert [r.stdout.strip() for r in rs] == ['0', '1', '2', '3']
    assert time.monotonic() - start < 1.9


# ---------------------------------------------------------------- real benchmark rows

def _rows(name):
    path = DATA / f'{name}.json'
    if not path.exists(): pytest.skip(f'benchmark data not found at {path} (set MOCO_DATA_DIR)')
    d = json.loads(path.read_text())
    return {r['id']: r for split in ('dev', 'test') for r in d[split]}


def _example(row):
    return Example(id=str(row['id']), input=row.get('input', ''), gold=row.get('test'), fields=row)


# Correct solutions written for moco (the benchmark files carry no canonical solutions), and one wrong one each.
HUMANEVAL = {
    # a chat answer that defines the prompt's helper first: the reference would test is_palindrome
    'HumanEval/10': ("```python\ndef is_palindrome(string: str) -> bool:\n    return string == string[::-1]\n\n"
                     "def make_palindrome(string: str) -> str:\n    for i in range(len(string)):\n"
                     "        if is_palindrome(string[i:]):\n            return string + string[:i][::-1]\n    return ''\n```",
                     "```python\ndef make_palindrome(string: str) -> str:\n    return string + string[::-1]\n```"),
    # a completion-style body that relies on the prompt's `poly` (the test calls it too)
    'HumanEval/32': ("    lo, hi = -1.0, 1.0\n    while poly(xs, lo) * poly(xs, hi) > 0:\n        lo, hi = lo * 2, hi * 2\n"
                     "    for _ in range(200):\n        mid = (lo + hi) / 2\n"
                     "        if poly(xs, mid) * poly(xs, lo) > 0:\n            lo = mid\n        else:\n            hi = mid\n"
                     "    return lo\n",
                     "    return 0.0\n"),
    'HumanEval/148': ("Sure.\n```python\ndef bf(planet1, planet2):\n"
                      "    names = ('Mercury', 'Venus', 'Earth', 'Mars', 'Jupiter', 'Saturn', 'Uranus', 'Neptune')\n"
                      "    if planet1 not in names or planet2 not in names or planet1 == planet2:\n        return ()\n"
                      "    i, j = sorted((names.index(planet1), names.index(planet2)))\n    return names[i + 1:j]\n```\n"
                      "Example:\n```python\nprint(bf('Jupiter', 'Neptune'))\n```",
                      "```python\ndef bf(planet1, planet2):\n    return ()\n```"),
    # draft then final: the final version is scored
    'HumanEval/0': ("Draft:\n```python\ndef has_close_elements(numbers, threshold):\n    return False\n```\nFixed:\n"
                    "```python\nfrom typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                    "    s = sorted(numbers)\n    return any(b - a < threshold for a, b in zip(s, s[1:]))\n```",
                    "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"),
}
MBPP = {
    872: ("```python\ndef check_subset(list1, list2):\n    return all(x in list1 for x in list2)\n```",
          "```python\ndef check_subset(list1, list2):\n    return True\n```"),
    # the entry point shadows a builtin
    126: ("```python\ndef sum(a, b):\n    total = 0\n    for i in range(1, min(a, b) + 1):\n"
          "        if a % i == 0 and b % i == 0:\n            total += i\n    return total\n```",
          "```python\ndef sum(a, b):\n    return a + b\n```"),
    # the test uses `sys`, which the answer imports
    596: ("```python\nimport sys\n\ndef tuple_size(t):\n    return sys.getsizeof(t)\n```",
          "```python\ndef tuple_size(t):\n    return len(t)\n```"),
    # empty `test` field in mbpp.json: scored with the prompt's assert
    769: ("```python\ndef Diff(li1, li2):\n    return list(set(li1) - set(li2)) + list(set(li2) - set(li1))\n```",
          "```python\ndef Diff(li1, li2):\n    return li1\n```"),
}


def test_real_humaneval_and_mbpp_rows():
    he, mb = _rows('humaneval'), _rows('mbpp')
    cases = [(he[k], good, bad) for k, (good, bad) in HUMANEVAL.items()] + [(mb[k], good, bad) for k, (good, bad) in MBPP.items()]
    examples = [_example(row) for row, _, _ in cases for _ in (0, 1)]
    texts = [t for _, good, bad in cases for t in (good, bad)]
    scores = score_many('coding', texts, examples, workers=2)
    for ex, text, s in zip(examples, texts, scores):
        want = 1.0 if any(text == good for _, good, _ in cases) else 0.0
        assert s.value == want, (ex.id, s)
    assert all(s.detail for s in scores[1::2])   # every failure says why


def test_every_coding_row_is_scorable():
    "Every real row yields a test program and an entry point (no ScoringError), and a non-answer scores 0."
    for name in ('humaneval', 'mbpp'):
        for row in _rows(name).values():
            assert score_coding('no code here', _example(row)).detail == 'no code found'


@pytest.mark.skipif(not HAS_RDKIT, reason='rdkit not installed (pip install rdkit)')
def test_real_smdd_rows():
    rows = list(_rows('smdd').values())
    pharm = next(r for r in rows if r['subtype'] == 'pharmacophore')
    lead = next(r for r in rows if r['subtype'] == 'lead_opt')
    always = "```python\ndef check_pharmacophore(smiles):\n    return True\n```"
    import numpy as np  # noqa: F401  (numpy bools must count as bools)
    npbool = "```python\nimport numpy as np\ndef check_pharmacophore(smiles):\n    return np.bool_(False)\n```"
    s1, s2 = score_many('smdd', [always, npbool], [_example(pharm)] * 2, workers=2)
    assert (s1.value, s2.value) == (0.5, 0.5), (s1, s2)
    assert score_smdd(lead['reference_smiles'], _example(lead)).detail == 'failed: same as reference'


def test_smdd_without_rdkit_is_an_error_not_a_zero(monkeypatch):
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'rdkit' else _find_spec(name, *a))
    with pytest.raises(ScoringError, match='pip install rdkit'):
        score_smdd('CCO', Example(id='x', input='', fields={'subtype': 'lead_opt', 'reference_smiles': 'CCO'}))


_find_spec = importlib.util.find_spec


def test_kernel_bench_without_a_gpu_is_an_error_not_a_zero():
    from moco.scoring.codescore import _kernel_bench_missing
    if not _kernel_bench_missing(): pytest.skip('this machine can score kernel_bench')
    row = next(iter(_rows('kernelbench').values()))
    with pytest.raises(ScoringError, match='kernel_bench needs a CUDA GPU with nvcc'):
        score_kernel_bench("```python\nclass ModelNew: pass\n```", _example(row))
