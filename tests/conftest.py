"""Shared test setup: offline Hugging Face, the real benchmark files when they are next to the repo, the `slow` marker."""
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / 'shared' / 'data' / 'moco'

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # nothing reaches the hub unless a test says so
if SHARED_DATA.is_dir() and not os.environ.get('MOCO_DATA_DIR'): os.environ['MOCO_DATA_DIR'] = str(SHARED_DATA)

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='also run tests marked slow (network, minutes)')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: needs minutes or the network; skipped unless --runslow or -m slow')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow') or 'slow' in (config.getoption('-m') or ''): return
    skip = pytest.mark.skip(reason='slow: run with --runslow (or -m slow)')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

@pytest.fixture
def tmp_moco_home(tmp_path, monkeypatch):
    "A fresh MOCO_HOME, so a test never writes into the real user cache."
    home = tmp_path / 'moco-home'
    monkeypatch.setenv('MOCO_HOME', str(home))
    return home
