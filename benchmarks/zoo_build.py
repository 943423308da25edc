"""Benchmark of the tiny-zoo build on this machine: from an empty folder, (1) the members `moco quickstart` needs
(tasks, base and the three specialists, each with its own check) and (2) the whole zoo (`moco zoo build`); per stage
wall seconds, training steps/s and check seconds, peak RSS, disk, load average before and after each build, the CPU; the
files loading with the standard transformers / peft classes; reuse of a finished build (0 s); with --quickstart, the
README main command (`moco quickstart`) end to end from an empty MOCO_HOME; with --twice, the same check numbers from a
second full build with the same seed.

    python benchmarks/zoo_build.py                  # quickstart subset + full build, report as JSON
    python benchmarks/zoo_build.py --quickstart     # ... and `moco quickstart` from empty caches
    python benchmarks/zoo_build.py --twice          # ... and a second full build to compare

Each build runs in a child process so its peak RSS is measured alone. The machine may be shared: the load average is
recorded next to every timing, and steps/s (measured inside the same build) is the number to compare across runs.
"""
from __future__ import annotations
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r"""
import sys, time, json, resource
t0 = time.time()
from moco.zoo import builder as zoo
members = json.loads(sys.argv[4])
root = zoo.build(seed=int(sys.argv[2]), root=sys.argv[1], progress=sys.argv[3] == '1', members=members)
print(json.dumps({'seconds': time.time() - t0, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# `moco quickstart` from an empty MOCO_HOME, exactly as a user runs it (moco.run builds only the zoo members the config names)
QUICKSTART = r"""
import sys, time, json, resource
t0 = time.time()
from moco.zoo import builder as zoo
from moco.cli import main
rc = main(['quickstart', '-o', sys.argv[1]])
print(json.dumps({'seconds': time.time() - t0, 'rc': rc, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'built': sorted(zoo.manifest()['members'])}))
"""

def _child(code:str, args:list, env=None)->dict:
    "Run `code` in a fresh interpreter; its last stdout line (JSON) plus the load average before and after."
    la0 = os.getloadavg(); t0 = time.time()
    r = subprocess.run([sys.executable, '-c', code, *map(str, args)], check=True, stdout=subprocess.PIPE, text=True,
                       env=env or os.environ.copy())
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return dict(out, wall_seconds=round(time.time() - t0, 1), seconds=round(out['seconds'], 1),
                peak_rss_mb=round(out['peak_rss_mb'], 1), load_avg_before=[round(x, 2) for x in la0],
                load_avg_after=[round(x, 2) for x in os.getloadavg()])

def build_once(root:Path, seed:int, progress:bool, members=None)->dict:
    "Build `members` (None: everything) into an empty `root` in a child process; timings, peak RSS, per-stage numbers."
    from moco.zoo import builder as zoo
    rep = _child(CHILD, [root, seed, '1' if progress else '0', json.dumps(members)])
    m = zoo.manifest(root)
    rep['stages'] = {}
    for s, v in m['stages'].items():
        recs = [m['members'][o] for o in v['outputs'] if o in m['members']]
        train = next((r.get('train_seconds') for r in recs if r.get('train_seconds')), None)
        steps = zoo.RECIPE['lora' if s.endswith('-lora') else s]['steps'] if s != 'tasks' else 0
        rep['stages'][s] = dict(seconds=v['seconds'], train_seconds=train, steps=steps,
                                steps_per_s=round(steps / train, 2) if train else None,
                                check_seconds=round(sum(r.get('check_seconds', 0) for r in recs), 1))
    tr = [v for v in rep['stages'].values() if v['train_seconds']]
    rep['train_steps'] = sum(v['steps'] for v in tr)
    rep['train_seconds'] = round(sum(v['train_seconds'] for v in tr), 1)
    rep['steps_per_s'] = round(rep['train_steps'] / rep['train_seconds'], 2) if rep['train_seconds'] else None
    rep['check_seconds'] = round(sum(v['check_seconds'] for v in rep['stages'].values()), 1)
    rep['members'] = sorted(m['members'])
    rep['check'] = m['check']
    return rep

def disk_mb(root:Path)->float:
    return round(sum(f.stat().st_size for f in root.rglob('*') if f.is_file()) / 2**20, 2)

def check_loading(root:Path)->dict:
    "Load every zoo model with the standard classes; parameter counts and sizes."
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from peft import PeftModel
    from moco.zoo.builder import MODELS
    out = {}
    for name, m in MODELS.items():
        p = root/'models'/name
        tok = AutoTokenizer.from_pretrained(p)
        if m.kind == 'lora':
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root/'models'/m.base), p)
            n = sum(x.numel() for k, x in model.named_parameters() if 'lora_' in k)
        elif m.kind == 'reward_model':
            model = AutoModelForSequenceClassification.from_pretrained(p); n = sum(x.numel() for x in model.parameters())
        else:
            model = AutoModelForCausalLM.from_pretrained(p); n = sum(x.numel() for x in model.parameters())
        assert tok.chat_template and tok.eos_token and tok.pad_token, name
        heads = getattr(model.config, 'head_dim', None) or model.config.hidden_size // model.config.num_attention_heads
        out[name] = dict(kind=m.kind, arch=type(model.get_base_model() if m.kind == 'lora' else model).__name__,
                         params=n, mb=disk_mb(p), head_dim=heads, vocab=len(tok))
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quickstart', action='store_true', help='also time `moco quickstart` from an empty MOCO_HOME')
    ap.add_argument('--twice', action='store_true', help='build the whole zoo a second time from scratch and compare the checks')
    ap.add_argument('--keep', help='keep the full build in this folder')
    ap.add_argument('--no-progress', action='store_true')
    ap.add_argument('--out', default=str(Path(__file__).with_name('zoo_build.last.json')), help='where to write the JSON report')
    a = ap.parse_args()
    import torch
    from moco.zoo import builder as zoo
    from moco.cli import quickstart_config
    tmp = Path(tempfile.mkdtemp(prefix='moco-zoo-bench-'))
    rep = dict(cpu=zoo.cpu_name(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), env=zoo.build_env(),
               recipe=zoo.RECIPE_VERSION, seed=a.seed, started=time.strftime('%Y-%m-%d %H:%M:%S'))
    qs_members = [m for m in quickstart_config()['model_names'] if m.startswith('zoo/')]
    rep['quickstart_members'] = qs_members
    rep['quickstart_stages'] = zoo.stages_for(qs_members)
    rep['quickstart_subset'] = build_once(tmp/'subset', a.seed, not a.no_progress, qs_members)
    shutil.rmtree(tmp/'subset')
    root = Path(a.keep) if a.keep else tmp/'full'
    if root.exists(): shutil.rmtree(root)
    rep['full'] = build_once(root, a.seed, not a.no_progress)
    rep['disk_mb'] = disk_mb(root)
    rep['models'] = check_loading(root)
    t0 = time.time(); zoo.build(seed=a.seed, root=root, progress=False); rep['rebuild_reuse_seconds'] = round(time.time() - t0, 2)
    if a.quickstart:
        env = dict(os.environ, MOCO_HOME=str(tmp/'home'), HF_HUB_OFFLINE='1')
        rep['quickstart_command'] = _child(QUICKSTART, [tmp/'qs-run'], env=env)
    if a.twice:
        rep['full2'] = build_once(tmp/'full2', a.seed, not a.no_progress)
        rep['same_check_twice'] = rep['full2']['check'] == rep['full']['check']
        shutil.rmtree(tmp/'full2')
    if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
    Path(a.out).write_text(json.dumps(rep, indent=1))
    print(json.dumps(rep, indent=1))

if __name__ == '__main__':
    main()
