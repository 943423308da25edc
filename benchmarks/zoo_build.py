"""Benchmark of the tiny-zoo build: time, peak RAM and disk of a clean build, the files loading with the standard
transformers / peft classes, and (with --twice) the same greedy numbers from a second build with the same seed.

    python benchmarks/zoo_build.py                  # clean build in a temp dir, report as JSON
    python benchmarks/zoo_build.py --twice          # ... and a second build to compare
    python benchmarks/zoo_build.py --root DIR --keep

The build runs in a child process so its peak RSS is measured alone (RUSAGE_CHILDREN).
"""
from __future__ import annotations
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r"""
import sys, time, json
t0 = time.time()
from moco.zoo import builder as zoo
root = zoo.build(seed=int(sys.argv[2]), root=sys.argv[1], progress=sys.argv[3] == '1')
print(json.dumps({'seconds': time.time() - t0}))
"""

def build_once(root:Path, seed:int, progress:bool)->dict:
    "Build the zoo into `root` in a child process; wall seconds and the child's peak RSS."
    t0 = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, '-c', CHILD, str(root), str(seed), '1' if progress else '0'], check=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KiB on Linux; max over children so far
    return dict(wall_seconds=round(time.time() - t0, 1), peak_rss_mb=round(max(peak, before) / 1024, 1))

def disk_mb(root:Path)->float:
    return round(sum(f.stat().st_size for f in root.rglob('*') if f.is_file()) / 2**20, 2)

def check_loading(root:Path)->dict:
    "Load every zoo model with the standard classes; parameter counts and sizes."
    import torch
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
    ap.add_argument('--root', help='build here (default: a fresh temp dir)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--twice', action='store_true', help='build a second time from scratch and compare the checks')
    ap.add_argument('--keep', action='store_true', help='keep the built zoo')
    ap.add_argument('--no-progress', action='store_true')
    ap.add_argument('--out', default=str(Path(__file__).with_name('zoo_build.last.json')), help='where to write the JSON report')
    a = ap.parse_args()
    root = Path(a.root or tempfile.mkdtemp(prefix='moco-zoo-bench-'))
    if root.exists() and any(root.iterdir()): shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    from moco.zoo import builder as zoo
    import torch
    rep = dict(cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), load_avg_before=os.getloadavg())
    rep['build'] = build_once(root, a.seed, not a.no_progress)
    rep['load_avg_after'] = os.getloadavg()
    m = zoo.manifest(root)
    rep['stage_seconds'] = {k: v['seconds'] for k, v in m['stages'].items()}
    rep['disk_mb'] = disk_mb(root)
    rep['models'] = check_loading(root)
    rep['check'] = m['check']
    t0 = time.time(); zoo.build(seed=a.seed, root=root, progress=False); rep['rebuild_reuse_seconds'] = round(time.time() - t0, 2)
    if a.twice:
        root2 = Path(tempfile.mkdtemp(prefix='moco-zoo-bench2-'))
        rep['build2'] = build_once(root2, a.seed, not a.no_progress)
        rep['same_check_twice'] = zoo.manifest(root2)['check'] == m['check']
        rep['check2'] = zoo.manifest(root2)['check']
        shutil.rmtree(root2)
    if not a.keep and not a.root: shutil.rmtree(root)
    Path(a.out).write_text(json.dumps(rep, indent=1))
    print(json.dumps(rep, indent=1))

if __name__ == '__main__':
    main()
