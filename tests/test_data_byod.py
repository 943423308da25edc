"""Bring-your-own-data and hostile input for moco.data.tasks: Hugging Face loading (offline), odd files, fetch failures."""
import json, os, time
from pathlib import Path
import pytest
from moco.core import ConfigError, DataError
from types import SimpleNamespace
from moco.data import tasks, byod, load
from moco.data import fetch as F
D = SimpleNamespace(**{k: v for m in (tasks, F, byod, load) for k, v in vars(m).items() if not k.startswith('__')})  # the data layer's names

@pytest.fixture(autouse=True)
def _isolated(tmp_moco_home, monkeypatch):
    monkeypatch.delenv('MOCO_DATA_DIR', raising=False)
    yield
    D.USER_DATASETS.clear()

def _jsonl(path, rows): path.write_text(''.join(json.dumps(r) + '\n' for r in rows)); return path

def test_hf_dataset_from_local_files_offline(tmp_path):
    "`datasets.load_dataset` really runs (packaged json builder, local files, HF_HUB_OFFLINE=1)."
    rows = [{'question': f'{i} is?', 'options': ['even', 'odd'], 'label': i % 2} for i in range(6)]
    files = {'validation': str(_jsonl(tmp_path / 'val.jsonl', rows[:2])), 'test': str(_jsonl(tmp_path / 'test.jsonl', rows[2:]))}
    spec = {'hf': 'json', 'hf_kwargs': {'data_files': files, 'cache_dir': str(tmp_path / 'hf')}, 'task_type': 'multiple_choice',
            'fields': {'choices': 'options', 'answer': 'label'}}
    t = D.load_task('parity', spec=spec)
    assert (t.name, len(t.dev), len(t.test), t.source) == ('parity', 2, 4, 'hf:json')
    assert [e.gold for e in t.test] == ['A', 'B', 'A', 'B'] and t.test[0].choices == {'A': 'even', 'B': 'odd'}
    assert [e.id for e in t.test] == ['test-0', 'test-1', 'test-2', 'test-3']
    named = D.load_task('parity', spec={**spec, 'dev_split': 'test', 'test_split': 'validation'})
    assert (len(named.dev), len(named.test)) == (4, 2)

def test_hf_hub_offline_fails_fast_with_one_error():
    t0 = time.time()
    with pytest.raises(DataError) as e:
        D.load_task('x', spec={'hf': 'no-such-org/no-such-dataset-moco', 'task_type': 'exact_match'})
    assert time.time() - t0 < 20
    msg = str(e.value)
    assert "'no-such-org/no-such-dataset-moco'" in msg and 'offline mode is on' in msg and '\n' not in msg

def test_register_dataset_is_usable_by_name(tmp_path):
    _jsonl(tmp_path / 'qa.jsonl', [{'q': 'Capital of France?', 'a': '["Paris", "Paris, France"]'}] * 3)
    info = D.register_dataset('capitals', path=str(tmp_path / 'qa.jsonl'), task_type='f1_match', fields={'input': 'q', 'output': 'a'},
                              description='capitals')
    assert info.spec['task_type'] == 'f1_match'
    t = D.load_task('capitals')
    assert t.test[0].gold == ['Paris', 'Paris, France'] and t.info.description == 'capitals'
    assert D.load_task('capitals', task_type='general_verifier').task_type == 'general_verifier'
    row = [r for r in D.list_datasets() if r['name'] == 'capitals'][0]
    assert row['kind'] == 'registered' and row['present'] and row['path'] == str(tmp_path / 'qa.jsonl')
    with pytest.raises(ConfigError, match='built-in'): D.register_dataset('zoo_mine', path='x.csv', task_type='exact_match')
    with pytest.raises(ConfigError, match="did you mean 'task_type'"): D.register_dataset('bad', path='x.csv', tasktype='exact_match')

def test_moco_file_by_path_keeps_registry_repairs(tmp_path):
    rows = [{'id': 1, 'question': 'Q', 'choices': {'A': 'a', 'B': 'b', 'C': 'c', 'id': 'd'}, 'answer': 'id'}]
    p = tmp_path / 'tablemwp_multiple_choice.json'
    p.write_text(json.dumps({'name': 'x', 'task_type': 'multiple_choice', 'dev': [], 'test': rows}))
    t = D.load_task(str(p))
    assert t.test[0].gold == 'D' and t.repairs == {'positional_choice_keys': 1}
    other = tmp_path / 'other.json'; other.write_text(p.read_text())
    with pytest.raises(DataError, match=r"other.json: test row 0 \(id '1'\): option keys"): D.load_task(str(other))

@pytest.mark.parametrize('content, match', [
    ('', 'not valid JSON'),
    ('[1, 2]', 'a MoCo dataset file is a JSON object'),
    ('{"task_type": "multiple_choice", "dev": [], "test": [["q"]]}', r'test row 0 .*must be a JSON object'),
    ('{"task_type": "multiple_choice", "dev": {}, "test": []}', '`dev` and `test` must be lists'),
    ('{"task_type": "essay", "dev": [], "test": []}', "unknown task_type 'essay'"),
    ('{"task_type": "multiple_choice", "dev": [], "test": [{"question": "q", "choices": {"A": "a"}, "answer": "A"}]}', '2 to 26 options'),
    ('{"task_type": "coding", "dev": [{"input": "x"}], "test": []}', r'dev row 0 .*no `test` field'),
])
def test_malformed_files_name_file_and_row(tmp_path, content, match):
    (tmp_path / 'bad.json').write_text(content)
    with pytest.raises(DataError, match=match) as e: D.load_task('bad', data_dir=tmp_path)
    assert 'bad.json' in str(e.value)

def test_too_many_options_and_binary_garbage(tmp_path):
    row = {'question': 'q', 'choices': [str(i) for i in range(27)], 'answer': 'A'}
    (tmp_path / 'wide.json').write_text(json.dumps({'task_type': 'multiple_choice', 'dev': [], 'test': [row]}))
    with pytest.raises(DataError, match='2 to 26'): D.load_task('wide', data_dir=tmp_path)
    (tmp_path / 'bin.json').write_bytes(b'\xff\xfe\x00garbage')
    with pytest.raises(DataError, match='bin.json'): D.load_task('bin', data_dir=tmp_path)
    (tmp_path / 'x.parquet').write_bytes(b'PAR1')
    with pytest.raises(DataError, match="unknown data format 'parquet'"):
        D.load_spec({'path': str(tmp_path / 'x.parquet'), 'task_type': 'exact_match'})

def test_csv_with_bom_unicode_and_index_answers(tmp_path):
    (tmp_path / 'q.csv').write_text('\ufeffid,frage,a,b,c,gold\nk1,Wie heißt das?,Straße,Weg,Platz,0\nk2,Und das?,α,β,γ,2\n', encoding='utf-8')
    t = D.load_task('q', spec={'path': str(tmp_path / 'q.csv'), 'task_type': 'multiple_choice',
                               'fields': {'question': 'frage', 'choices': ['a', 'b', 'c'], 'answer': 'gold'}})
    assert [(e.id, e.gold) for e in t.test] == [('k1', 'A'), ('k2', 'C')] and t.test[1].choices['B'] == 'β'

def test_write_atomic_never_leaves_half_files(tmp_path, monkeypatch):
    target = tmp_path / 'f.json'
    target.write_bytes(b'old')
    def boom(*a): raise KeyboardInterrupt  # killed between write and rename
    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(KeyboardInterrupt): D.write_atomic(target, b'new' * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['f.json']

def test_fetch_reports_pip_failure_in_one_sentence(tmp_moco_home, monkeypatch):
    "No index reachable (a closed local port stands in for no network): one DataError, nothing left behind."
    monkeypatch.setenv('PIP_INDEX_URL', 'http://127.0.0.1:9/simple')
    monkeypatch.setenv('PIP_RETRIES', '0')
    with pytest.raises(DataError, match=r'Could not download modelco==1\.1\.2 with pip .*MOCO_DATA_DIR'):
        D.fetch_moco_data(['agieval_tiny'])
    assert [p.name for p in tmp_moco_home.iterdir()] == ['data'] and not list((tmp_moco_home / 'data').iterdir())

def test_fetch_skips_files_already_verified(tmp_moco_home, monkeypatch):
    src = Path(os.environ.get('MOCO_SHARED_DATA', Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'moco'))
    if not (src / 'agieval_tiny.json').is_file(): pytest.skip('no local copy of agieval_tiny.json (../shared/data/moco)')
    (tmp_moco_home / 'data').mkdir(parents=True)
    (tmp_moco_home / 'data' / 'agieval_tiny.json').write_bytes((src / 'agieval_tiny.json').read_bytes())
    monkeypatch.setattr(F, '_pip_download_sdist', lambda tmp: pytest.fail('must not download a verified file'))
    assert D.fetch_moco_data('agieval_tiny') == tmp_moco_home / 'data'
