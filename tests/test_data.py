"""moco.data.tasks on MoCo's real benchmark files (MOCO_DATA_DIR, set by conftest to ../shared/data/moco when it exists)."""
import hashlib, os, string
from collections import Counter
from pathlib import Path
import pytest
from moco.core import ConfigError, DataError, TASK_TYPES
from moco.data.tasks import DATASETS, MOCO_SHA256, moco_home
from moco.data.load import list_datasets, load_task
from moco.data.fetch import fetch_moco_data

# The dataset table of reference-methods.md (MoCo 1.1.2, section 3): name -> (task_type, dev, test).
TABLE = {
    'agieval': ('multiple_choice', 1156, 1156), 'agieval_tiny': ('multiple_choice', 40, 40),
    'alpacaeval': ('reward_model', 2000, 1000), 'wildchat': ('reward_model', 1000, 1000),
    'apex_shortlist': ('general_verifier', 7, 40), 'arc_challenge': ('multiple_choice', 299, 1172),
    'bbh': ('exact_match', 1000, 1000), 'bixbench': ('multiple_choice', 102, 103), 'blend': ('multiple_choice', 1000, 1000),
    'chembench': ('multiple_choice', 498, 500), 'coconot': ('noncompliance', 1000, 1000),
    'communitybench': ('multiple_choice', 500, 500), 'culturalbench_hard': ('multiple_choice', 613, 613),
    'culturebench': ('exact_match', 2454, 2454), 'gpqa_diamond': ('multiple_choice', 99, 99),
    'gpqa_extended': ('multiple_choice', 273, 273), 'gpqa_main': ('multiple_choice', 224, 224),
    'gsm8k': ('exact_match', 200, 1000), 'human_interest': ('reward_model', 400, 400), 'humaneval': ('coding', 50, 114),
    'mbpp': ('coding', 487, 487), 'ifeval': ('ifeval', 250, 250), 'infinite_chat_diversity': ('generation_diversity', 26, 25),
    'infinite_chat_open': ('reward_model', 1000, 1000), 'kaleidoscope': ('multiple_choice', 1000, 1000),
    'kernelbench': ('kernel_bench', 125, 125), 'lab_bench': ('multiple_choice', 578, 578), 'math': ('exact_match', 956, 956),
    'medmcqa': ('multiple_choice', 2091, 2092), 'medqa': ('multiple_choice', 636, 637), 'mixeval': ('multiple_choice', 250, 250),
    'mmlu_redux': ('multiple_choice', 1000, 1000), 'mmluprox': ('multiple_choice', 500, 500), 'popqa': ('f1_match', 1000, 1000),
    'pubmedqa': ('exact_match', 500, 500), 'sciencemeter': ('multiple_choice', 1000, 1000), 'sciriff': ('exact_match', 114, 139),
    'scitarc': ('general_verifier', 185, 186), 'smdd': ('smdd', 135, 137), 'tablemwp_free_text': ('exact_match', 375, 376),
    'tablemwp_multiple_choice': ('multiple_choice', 124, 125), 'theoremqa': ('exact_match', 400, 400),
    'truthfulqa': ('multiple_choice', 200, 617), 'value_drifts': ('reward_model', 275, 275), 'wikidyk': ('f1_match', 1000, 765),
}

def _data_dir():
    d = os.environ.get('MOCO_DATA_DIR')
    return Path(d) if d and (Path(d) / 'gsm8k.json').is_file() else None

needs_data = pytest.mark.skipif(_data_dir() is None, reason="MOCO_DATA_DIR is not set to a folder with MoCo's benchmark "
                                "files (conftest uses ../shared/data/moco when it exists; `moco data fetch` downloads them)")

@pytest.fixture(autouse=True)
def _isolated_home(tmp_moco_home): return tmp_moco_home

_cache = {}
def task(name):
    if name not in _cache: _cache[name] = load_task(name)
    return _cache[name]

def test_registry_matches_reference_table():
    assert len(TABLE) == 45 and set(DATASETS) == set(TABLE)
    for name, (tt, dev, test) in TABLE.items():
        info = DATASETS[name]
        assert (info.task_type, info.dev_size, info.test_size) == (tt, dev, test), name
        assert info.description and info.sha256 == MOCO_SHA256[f'{name}.json']
    assert DATASETS['culturebench'].group_by == 'question_id'

@needs_data
@pytest.mark.parametrize('name', sorted(TABLE))
def test_every_file_loads(name):
    path = _data_dir() / f'{name}.json'
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DATASETS[name].sha256, f"{path} differs from modelco 1.1.2"
    t, (tt, ndev, ntest) = task(name), TABLE[name]
    assert (t.name, t.task_type, len(t.dev), len(t.test)) == (name, tt, ndev, ntest)
    assert 'MOCO_DATA_DIR' in t.source and t.info is DATASETS[name]
    ids = [e.id for e in t.dev + t.test]
    assert len(set(ids)) == len(ids), 'example ids must be unique within a task'
    assert all(e.split == 'dev' for e in t.dev) and all(e.split == 'test' for e in t.test)
    for e in t.dev + t.test:
        assert isinstance(e.input, str) and isinstance(e.fields, dict) and e.fields.get('id') is not None
        if tt == 'multiple_choice':
            n = len(e.choices)
            assert list(e.choices) == list(string.ascii_uppercase[:n]) and 2 <= n <= DATASETS[name].max_options
            assert e.gold in e.choices and all(isinstance(v, str) for v in e.choices.values())
            assert e.input == e.fields['question'] or name == 'mixeval'
        else:
            assert e.choices is None
        if tt in ('exact_match', 'general_verifier'): assert isinstance(e.gold, str) or (name == 'math' and e.gold is None)
        if tt == 'coding': assert e.get('language') == 'python' and ('def check' in e.gold if e.gold else e.id in ('769', '927'))
        if tt == 'ifeval': assert e.gold == e.get('instruction_id_list') and len(e.get('kwargs')) == len(e.gold)
        if tt == 'generation_diversity': assert isinstance(e.gold, list) and e.gold
        if tt == 'noncompliance': assert e.gold == e.get('category')
        if tt not in ('smdd', 'reward_model'): assert e.input.strip()
    if tt == 'multiple_choice':
        assert max(len(e.choices) for e in t.dev + t.test) == DATASETS[name].max_options

@needs_data
def test_popqa_aliases_are_lists_including_commas():
    exs = task('popqa').dev + task('popqa').test
    assert all(isinstance(e.gold, list) and e.gold and all(isinstance(a, str) and a for a in e.gold) for e in exs)
    assert sum(any(',' in a for a in e.gold) for e in exs) == 127   # aliases such as "Washington, D.C." stay whole
    assert isinstance(task('wikidyk').test[0].gold, str)

@needs_data
def test_documented_repairs():
    mix = task('mixeval')
    assert mix.repairs == {'strip_none_prefix': 255}
    assert not any(e.input.startswith('None') for e in mix.dev + mix.test)
    assert sum(e.fields['question'].startswith('None\n\n') for e in mix.dev + mix.test) == 255  # raw row untouched
    assert task('arc_challenge').repairs == {'numeric_choice_keys': 26}
    tab = task('tablemwp_multiple_choice')
    assert tab.repairs == {'positional_choice_keys': 103}
    assert sum(e.fields['answer'] == 'id' and e.gold == 'D' for e in tab.dev + tab.test) == 29
    assert task('culturalbench_hard').repairs == {'drop_null_options': 1}
    m = task('math')
    assert sum(e.gold is None for e in m.dev) == 7 and sum(e.gold is None for e in m.test) == 5
    assert m.repairs['unique_ids'] > 0 and task('blend').repairs['unique_ids'] > 0
    clean = [n for n in TABLE if n not in ('mixeval', 'arc_challenge', 'tablemwp_multiple_choice', 'culturalbench_hard', 'math', 'blend')]
    assert all(task(n).repairs == {} for n in clean)

@needs_data
def test_special_fields():
    cb = task('culturebench')
    assert all(e.get('question_id') is not None for e in cb.dev + cb.test)
    assert len({e.get('question_id') for e in cb.test}) < len(cb.test)   # real groups
    assert Counter(e.get('answer_type') for e in task('theoremqa').test)[None] == 0
    assert sum(e.get('answer_type') is not None for e in task('scitarc').dev + task('scitarc').test) == 13
    sm = task('smdd').dev + task('smdd').test
    assert Counter(e.get('subtype') for e in sm) == {'lead_opt': 247, 'pharmacophore': 25}
    assert all((e.input == '') == (e.get('subtype') == 'pharmacophore') for e in sm)
    assert all(e.gold == e.get('reference_smiles') for e in sm)
    assert {e.get('level') for e in task('kernelbench').test} == {1, 2, 3}
    assert sorted({len(e.choices) for e in task('truthfulqa').test})[-1] == 13

@needs_data
def test_task_type_overrides():
    assert load_task('gsm8k', task_type='general_verifier').task_type == 'general_verifier'
    gv = load_task('gpqa_diamond', task_type='general_verifier')
    assert gv.test[0].choices and gv.test[0].gold in gv.test[0].choices and gv.info.task_type == 'multiple_choice'
    assert load_task('humaneval', task_type='text_generation').task_type == 'text_generation'
    with pytest.raises(ConfigError, match='use one of exact_match, general_verifier, text_generation'):
        load_task('gsm8k', task_type='multiple_choice')
    with pytest.raises(ConfigError, match='use one of coding, text_generation'):
        load_task('humaneval', task_type='general_verifier')

@needs_data
def test_list_datasets_sees_the_folder():
    rows = {r['name']: r for r in list_datasets()}
    assert all(rows[n]['present'] and rows[n]['path'] == str(_data_dir() / f'{n}.json') for n in TABLE)
    assert rows['assaybench']['present'] is False and rows['assaybench']['task_type'] == 'gene_ranking'
    assert (rows['gsm8k']['dev'], rows['gsm8k']['test']) == (200, 1000)

def test_missing_everywhere_is_one_clear_error(monkeypatch):
    monkeypatch.delenv('MOCO_DATA_DIR', raising=False)
    with pytest.raises(DataError) as e: load_task('gsm8k')
    msg = str(e.value)
    assert 'MOCO_DATA_DIR' in msg and 'moco data fetch gsm8k' in msg and '`dataset` spec' in msg and msg.count('. ') == 0
    with pytest.raises(DataError, match="did you mean 'mmlu_redux'"): load_task('mmlu_redx')

@pytest.mark.slow
def test_fetch_moco_data_for_real(tmp_moco_home, monkeypatch):
    "Downloads modelco==1.1.2 from the package index with pip (network), verifies and unpacks the 45 files."
    dest = fetch_moco_data()
    assert dest == tmp_moco_home / 'data' and sorted(p.name for p in dest.iterdir()) == sorted(MOCO_SHA256)
    for f, sha in MOCO_SHA256.items(): assert hashlib.sha256((dest / f).read_bytes()).hexdigest() == sha
    assert not [p for p in tmp_moco_home.iterdir() if p.name != 'data']   # the download folder is gone
    (dest / 'popqa.json').write_text('corrupted')
    assert fetch_moco_data(['popqa', 'gsm8k']) == dest                    # repairs only what is wrong
    assert hashlib.sha256((dest / 'popqa.json').read_bytes()).hexdigest() == MOCO_SHA256['popqa.json']
    monkeypatch.delenv('MOCO_DATA_DIR', raising=False)
    assert len(load_task('popqa').test) == 1000
