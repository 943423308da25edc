"""Config files saved by other editors: UTF-16/32 and byte-order marks are read; undecodable bytes give one clear line from `moco validate`."""
import codecs, json, os, subprocess, sys
from pathlib import Path
import pytest

from moco.config import load_config
from moco.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"method": "text_majority_vote", "task": "agieval_tiny", "task_type": "multiple_choice",
          "model_names": ["zoo/arith", "zoo/capitals"], "name": "café ☕", "hyperparameters": {"temperature": 0}}
YAML = "method: text_majority_vote\ntask: agieval_tiny\ntask_type: multiple_choice\nmodel_names: [zoo/arith, zoo/capitals]\nname: café ☕\n"
ENCODINGS = {  # how an editor may save the file -> its bytes
    'utf-8': lambda t: t.encode('utf-8'),
    'utf-8 with BOM': lambda t: t.encode('utf-8-sig'),
    'utf-16 LE with BOM': lambda t: codecs.BOM_UTF16_LE + t.encode('utf-16-le'),
    'utf-16 BE with BOM': lambda t: codecs.BOM_UTF16_BE + t.encode('utf-16-be'),
    'utf-16 LE without BOM': lambda t: t.encode('utf-16-le'),
    'utf-16 BE without BOM': lambda t: t.encode('utf-16-be'),
    'utf-32 with BOM': lambda t: t.encode('utf-32'),
    'utf-32 LE without BOM': lambda t: t.encode('utf-32-le'),
}


@pytest.mark.parametrize('suffix', ['.json', '.yaml'])
@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_config_in_any_unicode_encoding_loads(tmp_path, encoding, suffix):
    path = tmp_path / f'config{suffix}'
    path.write_bytes(ENCODINGS[encoding](json.dumps(CONFIG, ensure_ascii=False) if suffix == '.json' else YAML))
    cfg = load_config(path)
    assert (cfg.method, cfg.model_names, cfg.name) == ('text_majority_vote', ['zoo/arith', 'zoo/capitals'], 'café ☕')


def _validate(path: Path):
    "`moco validate PATH` as a user runs it (this tree's code): (exit code, stdout, stderr)."
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}
    r = subprocess.run([sys.executable, '-c', 'from moco.cli import _entry; _entry()', 'validate', str(path)],
                       capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stdout, r.stderr


def test_validate_reads_a_utf16_config(tmp_path):
    "The reported case: a UTF-16 config gave a 27-line traceback; now it validates like its UTF-8 twin."
    twin, path = tmp_path / 'utf8.json', tmp_path / 'utf16.json'
    twin.write_text(json.dumps(CONFIG)); path.write_bytes(json.dumps(CONFIG).encode('utf-16'))
    code, out, err = _validate(path)
    assert 'Traceback' not in err
    assert (code, out, err.replace(str(path), 'X')) == tuple(x.replace(str(twin), 'X') if isinstance(x, str) else x
                                                            for x in _validate(twin))


@pytest.mark.parametrize('content, where', [
    (json.dumps(CONFIG, ensure_ascii=False).encode('cp1252', 'replace'), 'UTF-8 text (byte 0xe9 on line 1)'),
    (('{\n"method": "m",\n"task": "t"}').encode('latin-1').replace(b'"t"', b'"\xff"'), 'UTF-8 text (byte 0xff on line 3)'),
    (json.dumps(CONFIG).encode('utf-16')[:-1], 'UTF-16 text'),
], ids=['cp1252', 'a stray byte', 'truncated utf-16'])
def test_undecodable_config_is_one_clear_line(tmp_path, content, where):
    path = tmp_path / 'config.json'
    path.write_bytes(content)
    code, out, err = _validate(path)
    assert code == 2 and out == '', (code, out, err)
    assert err.strip().count('\n') == 0 and 'Traceback' not in err, err
    assert err.startswith(f'error: {path} is not readable as {where}') and 'save it as UTF-8' in err, err


def test_undecodable_config_in_process(tmp_path, capsys):
    path = tmp_path / 'config.yaml'
    path.write_bytes(YAML.encode('cp1252', 'replace'))
    assert main(['validate', str(path)]) == 2
    assert capsys.readouterr().err == (f"error: {path} is not readable as UTF-8 text (byte 0xe9 on line 5); "
                                       "save it as UTF-8 (UTF-16 with a byte-order mark also works).\n")
