"""Sandbox and code-scoring tests: hostile programs never escape, benign ones still work, real benchmark rows score right.

About a minute on 2 cores (most of it the hostile-program suite: 504 runs through probe scorers, in both policies and
five identity situations). Real-data tests read ../shared/data/moco (or $MOCO_DATA_DIR) and skip when it is absent.
"""
import importlib.util, json, os, platform, shutil, subprocess, sys, tempfile, time
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


def _alive(tag: str) -> list:
    "Host processes whose command line contains `tag` (not zombies)."
    found = []
    for d in Path('/proc').iterdir():
        try:
            if d.name.isdigit() and tag in (d / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace') \
                    and (d / 'status').read_text().split('State:')[1].split()[0] != 'Z':
                found.append(int(d.name))
        except (OSError, IndexError): pass
    return found


def _gone(tag: str, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while _alive(tag) and time.monotonic() < end: time.sleep(0.05)
    return not _alive(tag)


LEFT_BEHIND = ("import os, subprocess, sys\n"
               "subprocess.Popen(['sleep', '{t}1'], start_new_session=True)      # its own session and process group\n"
               "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0: os.execvp('sleep', ['sleep', '{t}2'])   # a double-forked daemon\n"
               "    os._exit(0)\n"
               "print('started', flush=True)\n")


@pytest.mark.parametrize('end', ['timeout', 'exit'])
def test_the_whole_process_tree_dies_with_the_program(end):
    "GPU policy: children in their own session, and a double-forked daemon, die at the timeout and when the program exits."
    tag = f'3{os.getpid() % 1000}.{int(time.time() * 1000) % 100000}'
    code = LEFT_BEHIND.format(t=tag) + ('import time\ntime.sleep(30)\n' if end == 'timeout' else '')
    r = run_python(code, timeout=2, gpu=True)
    assert r.stdout.strip() == 'started', r
    assert r.timed_out == (end == 'timeout') and r.duration < 6
    assert _gone(tag), f'processes of the sandbox survived its {end}: {_alive(tag)}'


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


LEGIT_PROCESSES = r"""
import asyncio, concurrent.futures, multiprocessing as mp, os, signal, subprocess, sys, time
def square(x): return x * x
if __name__ == '__main__':
    with mp.get_context('spawn').Pool(2) as pool: a = pool.map(square, [1, 2, 3])
    with mp.get_context('fork').Pool(2) as pool: b = pool.map(square, [4, 5])
    with concurrent.futures.ProcessPoolExecutor(2) as ex: c = list(ex.map(square, [6, 7]))
    q = mp.Queue(); p = mp.Process(target=q.put, args=(8,)); p.start(); d = q.get(); p.join()
    child = subprocess.Popen(['sleep', '30']); os.kill(child.pid, signal.SIGTERM); e = child.wait()
    group = subprocess.Popen(['sh', '-c', 'sleep 30 & sleep 30'], start_new_session=True); time.sleep(0.2)
    os.killpg(group.pid, signal.SIGKILL); f = group.wait()
    t = mp.Process(target=time.sleep, args=(30,)); t.start(); t.terminate(); t.join()
    async def run():
        proc = await asyncio.create_subprocess_exec('echo', 'async', stdout=asyncio.subprocess.PIPE)
        return (await proc.communicate())[0].decode().strip()
    g = asyncio.run(run())
    with mp.Manager() as m: h = m.list([9])[0]
    print(a, b, c, d, e, f, t.exitcode, g, h, subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout.strip())
"""


def test_gpu_policy_runs_subprocesses_and_multiprocessing():
    "Compilers and test harnesses start processes and signal their own children: all of that keeps working."
    r = run_python(LEGIT_PROCESSES, gpu=True, timeout=60)
    assert r.ok, r
    assert r.stdout.split('\n')[0] == '[1, 4, 9] [16, 25] [36, 49] 8 -15 -9 -15 async 9 42', r.stdout


@pytest.mark.parametrize('gpu', [False, True])
def test_signals_to_itself_threads_and_asyncio_work_in_both_policies(gpu):
    r = run_python("import asyncio, os, signal, socket, threading\ngot = []\n"
                   "signal.signal(signal.SIGUSR1, lambda *a: got.append('usr1'))\n"
                   "os.kill(os.getpid(), signal.SIGUSR1); signal.raise_signal(signal.SIGUSR1)\n"
                   "t = threading.Thread(target=lambda: got.append('thread')); t.start(); t.join()\n"
                   "async def f(): return 'async'\ngot.append(asyncio.run(f()))\n"
                   "s = socket.socket(socket.AF_UNIX); s.bind('x.sock'); s.listen(); socket.socket(socket.AF_UNIX).connect('x.sock')\n"
                   "print(got)", gpu=gpu)
    assert r.ok and r.stdout.strip() == "['usr1', 'usr1', 'thread', 'async']", r


def test_run_many_keeps_order_and_runs_in_parallel():
    start = time.monotonic()
    rs = run_many([f"import time\ntime.sleep(1.5)\nprint({i})" for i in range(4)], workers=4)
    assert [r.stdout.strip() for r in rs] == ['0', '1', '2', '3']
    assert time.monotonic() - start < 4.5   # one after another: at least 6 s (margin for a CPU shared with another test worker)


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


# ---------------------------------------------------------------- cross-process attacks, through a probe process
# Each group of hostile programs is scored by a separate "probe" process running the sandbox (the scorer under
# attack), so a scorer that gets killed shows up as a failed test, not as a crashed test run. The probe also keeps a
# victim process of its own user alive and serves a Unix socket; both must come through untouched.

PROBE = r'''
import concurrent.futures, importlib, json, os, shutil, socket, subprocess, sys, tempfile, threading, warnings
spec = json.loads(sys.argv[1])
sb = importlib.import_module(spec['module'])
getattr(sb, '_FORCE', {}).update(spec['force'])
victim = subprocess.Popen(['sleep', '300'], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps(dict(victim=victim.pid)), flush=True)
sock_dir = tempfile.mkdtemp(prefix='moco-probe-'); os.chmod(sock_dir, 0o755)
sock = os.path.join(sock_dir, 'scorer.sock')
srv = socket.socket(socket.AF_UNIX); srv.bind(sock); os.chmod(sock, 0o777); srv.listen(16)
connections = []
def serve():
    while True:
        try: c, _ = srv.accept()
        except OSError: return
        connections.append(1); c.close()
threading.Thread(target=serve, daemon=True).start()
values = dict(scorer=os.getpid(), scorer_pgid=os.getpgid(0), victim=victim.pid, sock=sock, **spec['values'])
tail = "\n\ndef add(a, b):\n    return a + b\nassert add(1, 2) == 3\nprint('moco-tests-passed')\n"
def run(item):
    name, code = item
    return name, sb.run_python(code.format(**values) + tail, gpu=spec['gpu'], timeout=spec['timeout'], max_procs=64)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        for name, r in ex.map(run, spec['programs']):
            print(json.dumps(dict(name=name, score=int(r.ok and 'moco-tests-passed' in r.stdout), reason=r.reason,
                                  layers=r.layers, out=(r.stdout + r.stderr)[-300:])), flush=True)
alive = victim.poll() is None
victim.kill(); srv.close(); shutil.rmtree(sock_dir, ignore_errors=True)
print(json.dumps(dict(done=True, victim_alive=alive, connections=len(connections),
                      warnings=[str(w.message) for w in caught])), flush=True)
'''

NR = {'x86_64': dict(kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129, pidfd_open=434, pidfd_getfd=438, ptrace=101,
                     process_vm_readv=310, setns=308, unshare=272, mount=165, umount2=166, clone=56, keyctl=250, bpf=321,
                     perf_event_open=298, prlimit64=302, io_uring_setup=425),
      'aarch64': dict(kill=129, tkill=130, tgkill=131, rt_sigqueueinfo=138, pidfd_open=434, pidfd_getfd=438, ptrace=117,
                      process_vm_readv=270, setns=268, unshare=97, mount=40, umount2=39, clone=220, keyctl=219, bpf=280,
                      perf_event_open=241, prlimit64=261, io_uring_setup=425)}.get(platform.machine(), {})
CT = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nNR = " + repr(NR).replace('{', '{{').replace('}', '}}') +
      "\ndef sc(name, *a):\n    r = libc.syscall(NR[name], *[ctypes.c_long(x) for x in a])\n"
      "    if r == -1: raise OSError(ctypes.get_errno(), name + ': ' + os.strerror(ctypes.get_errno()))\n    return r\n"
      "def addr(b): return ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value\n"
      "buf = ctypes.create_string_buffer(256)\nbuf_at = ctypes.addressof(buf)\n")
SH = "import subprocess, sys\nsubprocess.run({cmd}, check=True)\n"
PY = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', {src!r}], check=True)\n"
P, EPERM, ESRCH, CPE = 'blocked: process', 'PermissionError', 'ProcessLookupError', 'CalledProcessError'
CTX = {'blocked: ctypes'}

# name: (code, reasons under the strict policy, reasons under the GPU policy); None: not run under that policy.
# "core" programs (cross-process routes) run in every identity situation, the rest in the two main ones.
CROSS = {
    'os.kill the scorer': ("import os, signal\nos.kill({scorer}, signal.SIGKILL)", {P}, {ESRCH}),
    'os.kill the parent': ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", {P}, {P}),
    'os.kill a process of the same user': ("import os, signal\nos.kill({victim}, signal.SIGKILL)", {P}, {ESRCH}),
    'os.kill every process (-1)': ("import os, signal\nos.kill(-1, signal.SIGKILL)", {P}, {P}),
    'os.killpg the scorer group': ("import os, signal\nos.killpg({scorer_pgid}, signal.SIGKILL)", {P}, {ESRCH}),
    'pidfd kill the parent (the report)': ("import os, signal\nfd = os.pidfd_open(os.getppid())\n"
                                           "signal.pidfd_send_signal(fd, signal.SIGKILL)", {P}, {P}),
    'pidfd kill the scorer': ("import os, signal\nsignal.pidfd_send_signal(os.pidfd_open({scorer}), signal.SIGKILL)", {P}, {ESRCH}),
    'pidfd kill a process of the same user': ("import os, signal\nsignal.pidfd_send_signal(os.pidfd_open({victim}), 9)", {P}, {ESRCH}),
    'pidfd kill init through /proc/1': ("import os, signal\nfd = os.open('/proc/1', os.O_RDONLY)\n"
                                        "signal.pidfd_send_signal(fd, signal.SIGKILL)", {'blocked: read'}, {P}),
    'fresh posix module: pidfd of init': ("import importlib.util as u\nposix = u.module_from_spec(u.find_spec('posix'))\n"
                                          "posix.pidfd_open(1)", {EPERM}, {EPERM}),
    'fresh posix module: pidfd of the scorer': ("import importlib.util as u\nposix = u.module_from_spec(u.find_spec('posix'))\n"
                                                "posix.pidfd_open({scorer})", {EPERM}, {ESRCH}),
    'syscall kill init': (CT + "sc('kill', 1, 9)", CTX, {EPERM}),
    'syscall kill -1': (CT + "sc('kill', -1, 9)", CTX, {EPERM}),
    'syscall kill the scorer': (CT + "sc('kill', {scorer}, 9)", CTX, {ESRCH}),
    'syscall tgkill the scorer': (CT + "sc('tgkill', {scorer}, {scorer}, 9)", CTX, {ESRCH}),
    'syscall tkill init': (CT + "sc('tkill', 1, 9)", CTX, {EPERM}),
    'syscall rt_sigqueueinfo init': (CT + "sc('rt_sigqueueinfo', 1, 9, buf_at)", CTX, {EPERM}),
    'syscall pidfd_open init': (CT + "sc('pidfd_open', 1, 0)", CTX, {EPERM}),
    'ptrace attach init': (CT + "sc('ptrace', 16, 1, 0, 0)", CTX, {EPERM}),
    'ptrace attach the scorer': (CT + "sc('ptrace', 16, {scorer}, 0, 0)", CTX, {EPERM}),
    'process_vm_readv the scorer': (CT + "iov = (ctypes.c_void_p * 2)(buf_at, 8)\n"
                                    "sc('process_vm_readv', {scorer}, ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0)", CTX, {EPERM}),
    'pidfd_getfd': (CT + "sc('pidfd_getfd', os.pidfd_open(os.getpid()), 0, 0)", CTX, {EPERM}),
    'setns': (CT + "sc('setns', os.open('/proc/self/ns/net', os.O_RDONLY), 0)", CTX, {EPERM}),
    'unshare a user namespace': (CT + "sc('unshare', 0x10000000)", CTX, {EPERM}),
    'clone into a new user namespace': (CT + "sc('clone', 0x10000000 | 17, 0, 0, 0, 0)", CTX, {EPERM}),
    'remount / read-write': (CT + "sc('mount', 0, addr(b'/'), 0, 32 | 4096, 0)", CTX, {EPERM}),
    'unmount /proc': (CT + "sc('umount2', addr(b'/proc'), 2)", CTX, {EPERM}),
    'mount the host proc': (CT + "sc('mount', addr(b'proc'), addr(b'/tmp'), addr(b'proc'), 0, 0)", CTX, {EPERM}),
    'keyctl': (CT + "sc('keyctl', 0, -3, 0)", CTX, {EPERM}),
    'bpf': (CT + "sc('bpf', 0, buf_at, 128)", CTX, {EPERM}),
    'perf_event_open on the scorer': (CT + "buf[4:8] = (112).to_bytes(4, 'little')\n"
                                      "sc('perf_event_open', buf_at, {scorer}, -1, -1, 0)", CTX, {EPERM}),
    'prlimit the scorer': (CT + "sc('prlimit64', {scorer}, 9, 0, buf_at)", CTX, {ESRCH}),
    'io_uring': (CT + "sc('io_uring_setup', 4, buf_at)", CTX, {EPERM}),
    'shell: kill -9 the scorer': (SH.format(cmd="['sh', '-c', 'kill -9 {scorer}']"), {P}, {CPE}),
    'shell: kill -9 -1': (SH.format(cmd="['sh', '-c', 'kill -9 -1']"), {P}, {CPE}),
    'shell: kill -9 1': (SH.format(cmd="['sh', '-c', 'kill -9 1']"), {P}, {CPE}),
    'shell: kill every visible pid': (SH.format(cmd="['sh', '-c', 'for p in /proc/[0-9]*; do kill -9 ${{p#/proc/}}; done; exit 1']"),
                                      {P}, {CPE, 'killed (SIGKILL)'}),
    'child process: pidfd kill its grandparent': (PY.format(src="import os, signal; signal.pidfd_send_signal(os.pidfd_open(1), 9)"),
                                                  {P}, {CPE}),
    'child process: read the scorer environment': (PY.format(src="print(open('/proc/{scorer}/environ').read())"), {P}, {CPE}),
    'child process: write init memory': (PY.format(src="open('/proc/1/mem', 'wb').write(b'x')"), {P}, {CPE}),
    'connect to the scorer socket': ("import socket\nsocket.socket(socket.AF_UNIX).connect({sock!r})", {'blocked: network'},
                                     {'blocked: network'}),
    'child process: connect to the scorer socket': (PY.format(src='import socket; socket.socket(socket.AF_UNIX).connect("{sock}")'),
                                                    {P}, {CPE}),
    'child process: open the disk for writing': (PY.format(src="import os, glob\nfor d in glob.glob('/dev/[sv]d?') + glob.glob('/dev/nvme*'):\n"
                                                           "    os.open(d, os.O_WRONLY); print('opened', d); break\nelse: raise SystemExit(1)"),
                                                 {P}, {CPE}),
    'shell: make a cgroup': (SH.format(cmd="['sh', '-c', 'mkdir /sys/fs/cgroup/moco-sandbox-escape || mkdir /sys/fs/cgroup/unified/moco-sandbox-escape']"),
                             {P}, {CPE}),
    'shell: remount / read-write and write /root': (SH.format(cmd="['sh', '-c', 'mount -o remount,rw,bind / && touch {home}']"), {P}, {CPE}),
}
ESCAPES = {
    'socket connect': ("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)", {'blocked: network'}, {'blocked: network'}),
    'write outside tmp': ("open({mark!r}, 'w').write('pwned')", {'blocked: filesystem'}, {'blocked: filesystem'}),
    'write home': ("open({home!r}, 'w').write('pwned')", {'blocked: filesystem'}, {'blocked: filesystem'}),
    'delete a file outside': ("import os\nos.remove({victim_file!r})", {'blocked: filesystem'}, {'blocked: filesystem'}),
    'rename a file outside': ("import os\nos.rename({victim_file!r}, 'stolen')", {'blocked: filesystem'}, {'blocked: filesystem'}),
    'symlink escape': ("import os\nos.symlink({victim_file!r}, 'link')\nopen('link', 'w').write('pwned')", {'blocked: filesystem'},
                       {'blocked: filesystem'}),
    'read the parent environment': ("import os\nprint(open(f'/proc/{{os.getppid()}}/environ').read())", {'blocked: read'},
                                    {P, 'FileNotFoundError'}),
    'shell: touch outside': (SH.format(cmd="['sh', '-c', 'touch {mark}']"), {P}, {CPE}),
    'shell: write a file outside': (SH.format(cmd="['sh', '-c', 'echo pwned >> {victim_file}']"), {P}, {CPE}),
    'fresh fork_exec': (FRESH_FORK_EXEC, {'PermissionError', P}, None),
    'multiprocessing': ("import multiprocessing as mp\np = mp.Process(target=print)\np.start(); p.join()", {P}, None),
    'fork bomb': ("import os\nwhile True:\n    os.fork()", {P}, {'BlockingIOError', 'timeout'}),
    'memory bomb': ("x = bytearray(8 << 30)", {'MemoryError'}, None),
    'infinite loop': ("while True:\n    pass", {'timeout'}, {'timeout'}),
    'sleep forever': ("import time\ntime.sleep(1000)", {'timeout'}, {'timeout'}),
}
IDENTITIES = {  # name: (how the probe runs, sandbox switches, layers every result must have)
    'default': ('this python', {}, {'pidns', 'seccomp', 'no_new_privs'}),
    'python readable by nobody': ('private python', {}, {'pidns', 'seccomp', 'no_new_privs'}),
    'nobody cannot read python': ('this python', {'drop': False}, {'pidns', 'seccomp', 'root_user', 'no_caps'}),
    'no user namespaces': ('this python', {'userns': False}, {'pidns', 'seccomp', 'no_caps'}),
    'non-root scorer': ('private python as nobody', {}, {'pidns', 'userns', 'seccomp', 'unprivileged_user', 'no_caps'}),
}
FULL = ('default', 'python readable by nobody')
CASES = [(ident, policy, name) for ident in IDENTITIES for policy in ('strict', 'gpu')
         for name, (_, strict, gpu) in {**CROSS, **(ESCAPES if ident in FULL else {})}.items()
         if (strict if policy == 'strict' else gpu) is not None]
_PROBED = {}


def _link_tree(src: Path, dst: Path, skip=()):
    "Hard-link (else copy) the files of `src` into `dst`, directories world-readable."
    for d, dirs, names in os.walk(src):
        dirs[:] = [x for x in dirs if x not in skip]
        out = dst / Path(d).relative_to(src); out.mkdir(parents=True, exist_ok=True); out.chmod(0o755)
        for n in names:
            try: os.link(Path(d) / n, out / n, follow_symlinks=True)
            except OSError: shutil.copy2(Path(d) / n, out / n)


@pytest.fixture(scope='module')
def private_python():
    "A private copy (hard links) of this interpreter, its standard library and moco, in a directory `nobody` can read."
    if os.geteuid() != 0 or not sys.platform.startswith('linux'): pytest.skip('needs root on Linux (a copy readable by nobody)')
    base, ver = Path(sys.base_prefix).resolve(), f'python{sys.version_info.major}.{sys.version_info.minor}'
    root = Path(tempfile.mkdtemp(prefix='moco-test-python-', dir='/tmp')); root.chmod(0o755)
    try:
        (root / 'bin').mkdir(mode=0o755)
        shutil.copy2(os.path.realpath(sys.executable), root / 'bin' / ver)
        _link_tree(base / 'lib' / ver, root / 'lib' / ver, skip={'site-packages', 'test', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip'})
        for lib in (base / 'lib').glob('libpython*'): shutil.copy2(lib, root / 'lib' / lib.name)
        _link_tree(ROOT / 'moco', root / 'src' / 'moco', skip={'__pycache__'})
        yield root / 'bin' / ver, dict(LD_LIBRARY_PATH=str(root / 'lib'), PYTHONPATH=str(root / 'src'))
    finally: shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope='module')
def probe_traps():
    "Files outside the sandbox (in the home directory, which the sandbox hides) that hostile programs go for."
    d = Path(tempfile.mkdtemp(prefix='moco-traps-', dir=str(Path.home()))); d.chmod(0o755)
    victim = d / 'victim.txt'; victim.write_text('keep me'); victim.chmod(0o666)
    home = Path.home() / '.moco-sandbox-probe-pwned'; home.unlink(missing_ok=True)
    values = dict(victim_file=str(victim), mark=str(d / 'escaped'), home=str(home))
    yield values
    try:
        assert victim.read_text() == 'keep me', 'a file outside the sandbox was changed'
        assert not (d / 'escaped').exists() and not home.exists(), 'a file outside the sandbox was created'
        for p in ('/sys/fs/cgroup/moco-sandbox-escape', '/sys/fs/cgroup/unified/moco-sandbox-escape'):
            assert not os.path.exists(p), 'a cgroup was created'
    finally: shutil.rmtree(d, ignore_errors=True)


def _probe(ident: str, policy: str, private_python, traps) -> dict:
    "Run every program of (identity, policy) through one probe process; {name: result}, plus '' for the probe's end."
    how, force, _ = IDENTITIES[ident]
    names = [n for i, p, n in CASES if (i, p) == (ident, policy)]
    programs = [(n, {**CROSS, **ESCAPES}[n][0]) for n in names]
    spec = dict(module=run_python.__module__, force=force, gpu=policy == 'gpu', timeout=1.5, programs=programs, values=traps)
    python, env, ids = sys.executable, dict(os.environ, PYTHONPATH=str(ROOT)), {}
    if how != 'this python': python, extra = private_python; env.update(extra)
    if how.endswith('as nobody'): ids = dict(user=65534, group=65534, extra_groups=[]); env['HOME'] = '/tmp'
    try:
        p = subprocess.run([python, '-c', PROBE, json.dumps(spec)], capture_output=True, text=True, env=env, timeout=300, **ids)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e: rc, out, err = 'timeout', e.stdout or '', e.stderr or ''
    out, err = (x.decode() if isinstance(x, bytes) else x for x in (out, err))
    lines = [json.loads(l) for l in out.splitlines() if l.startswith('{')]
    for l in lines:                                    # a probe that died leaves its victim behind
        if 'victim' in l and l['victim'] in _alive('sleep 300'): os.kill(l['victim'], 9)
    results = {l['name']: l for l in lines if 'name' in l}
    end = next((l for l in lines if l.get('done')), None)
    results[''] = dict(rc=rc, end=end, stderr=err[-2000:])
    return results


@pytest.mark.skipif(not sys.platform.startswith('linux') or not NR, reason='Linux x86-64/arm64 kernel layers')
@pytest.mark.parametrize('ident,policy,name', CASES)
def test_hostile_program_is_refused_and_the_scorer_survives(ident, policy, name, request, probe_traps):
    private = request.getfixturevalue('private_python') if IDENTITIES[ident][0] != 'this python' else None
    if (ident, policy) not in _PROBED: _PROBED[ident, policy] = _probe(ident, policy, private, probe_traps)
    results = _PROBED[ident, policy]
    end = results['']
    assert end['rc'] == 0 and end['end'], f"the scorer died (exit {end['rc']}) after {len(results) - 1} programs: {end['stderr']}"
    assert end['end']['victim_alive'], 'a process of the scorer\'s user was killed'
    assert end['end']['connections'] == 0, "a program connected to the scorer's Unix socket"
    r = results[name]
    _, strict, gpu = {**CROSS, **ESCAPES}[name]
    assert r['score'] == 0 and r['reason'] in (strict if policy == 'strict' else gpu), r
    assert IDENTITIES[ident][2] <= set(r['layers']), r['layers']
    if os.geteuid() == 0 and ident != 'nobody cannot read python': assert 'unprivileged_user' in r['layers'], r['layers']
    if ident == 'nobody cannot read python': assert any('runs as root' in w for w in end['end']['warnings'])
