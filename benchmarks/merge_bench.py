"""Peak memory of `moco.merge`: merging four random ~300 MB Llama models must stay within 2.5x one model's size.

    PYTHONPATH=. python benchmarks/merge_bench.py [--layers 5] [--out benchmarks/merge_bench.last.txt] [--no-mergekit]

The four models (float32, random weights, one architecture) are written on the fly into a temp folder. Each merge runs
in a fresh Python process, which reports its own peak resident set size (`ru_maxrss`, everything the process touched:
the interpreter, torch, the tensors, and any memory-mapped file pages it kept resident; `VmHWM` from /proc agrees).
The parent never imports torch and writes the models from a child too: Linux carries the parent's resident size at fork
into a child's `ru_maxrss`, so a heavy parent would inflate every measurement. An idle child that only imports torch,
safetensors and moco.merge gives the baseline. For contrast, the same merge in memory
(`merge_state_dicts`, every model loaded first) and mergekit's CLI on the same YAML (when installed) are measured the same way.
"""
import argparse, datetime, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 2.5

CHILD = r"""
import json, resource, sys, time
t0 = time.time()
mode, args = sys.argv[1], json.loads(sys.argv[2])
import torch, safetensors.torch
from moco.merge import MergeSpec, merge, merge_state_dicts, to_mergekit
def make_models(root, n, layers):
    "Write `n` random float32 Llama models of one architecture."
    from pathlib import Path
    from transformers import LlamaConfig, LlamaForCausalLM
    from safetensors.torch import save_file
    cfg = LlamaConfig(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=layers, num_attention_heads=16,
                      num_key_value_heads=16, tie_word_embeddings=False, dtype='float32', architectures=['LlamaForCausalLM'])
    with torch.device('meta'): shapes = {k: v.shape for k, v in LlamaForCausalLM(cfg).state_dict().items()}
    for i in range(n):
        d = Path(root) / f'model{i}'; d.mkdir(parents=True)
        g = torch.Generator().manual_seed(i)
        save_file({k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}, str(d / 'model.safetensors'), metadata={'format': 'pt'})
        cfg.save_pretrained(d)

if mode == 'make':
    make_models(args['root'], args['n'], args['layers'])
elif mode == 'stream':
    merge(MergeSpec(**args['spec']), args['out'])
elif mode == 'memory':
    from safetensors.torch import load_file, save_file
    spec = args['spec']
    sds = [load_file(f"{m}/model.safetensors") for m in spec['models']]
    base = load_file(f"{spec['base']}/model.safetensors") if spec.get('base') else None
    out = merge_state_dicts(sds, spec['method'], spec.get('weights'), base, **{k: v for k, v in spec.items() if k in ('density', 'seed')})
    save_file(out, args['out'] + '.safetensors')
elif mode == 'mergekit':
    from mergekit.scripts.run_yaml import main
    sys.argv = ['mergekit-yaml', args['yaml'], args['out'], '--no-write-model-card', '--quiet', '--no-copy-tokenizer']
    try: main()
    except SystemExit as e:
        if e.code: raise
hwm = next((int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')), None)
print(json.dumps({'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'vmhwm_mb': hwm, 'seconds': time.time() - t0}))
"""

def machine()->str:
    "CPU model name (lscpu) and core count."
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        name = next((l.split(':', 1)[1].strip() for l in out.splitlines() if l.startswith('Model name')), '?')
    except OSError: name = '?'
    return f"{name}, {os.cpu_count()} cpus"

def child(mode:str, args:dict)->dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE='1', OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    r = subprocess.run([sys.executable, '-c', CHILD, mode, json.dumps(args)], capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode: raise SystemExit(f'{mode} failed:\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--layers', type=int, default=5, help='decoder layers (5: ~324 MB per model)')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'merge_bench.last.txt'))
    ap.add_argument('--no-mergekit', action='store_true')
    a = ap.parse_args()
    lines = [f"# PYTHONPATH=. python benchmarks/merge_bench.py --layers {a.layers}   ({machine()}, "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f})"]
    tmp = Path(tempfile.mkdtemp(prefix='moco-merge-bench-'))
    try:
        child('make', {'root': str(tmp), 'n': 4, 'layers': a.layers})
        models = [str(tmp / f'model{i}') for i in range(4)]
        size = Path(models[0], 'model.safetensors').stat().st_size / 2**20
        lines.append(f"4 random Llama models (hidden 1024, {a.layers} layers, vocab 8192, float32): {size:.0f} MB each on disk")
        idle = child('idle', {})
        lines.append(f"baseline (python + torch + safetensors + moco.merge, nothing merged): peak RSS {idle['maxrss_mb']:.0f} MB")
        cases = {'linear of 4 models': dict(method='linear', models=models),
                 'ties of 3 models onto a base (4 inputs)': dict(method='ties', models=models[1:], base=models[0], density=0.5),
                 'dare_ties of 3 models onto a base (4 inputs)': dict(method='dare_ties', models=models[1:], base=models[0], density=0.5)}
        worst = 0
        for name, spec in cases.items():
            r = child('stream', {'spec': spec, 'out': str(tmp / 'out')}); shutil.rmtree(tmp / 'out')
            ratio = r['maxrss_mb'] / size; worst = max(worst, ratio)
            lines.append(f"moco.merge, {name}: peak RSS {r['maxrss_mb']:.0f} MB = {ratio:.2f}x one model "
                         f"({r['maxrss_mb'] - idle['maxrss_mb']:.0f} MB above the baseline; VmHWM {r['vmhwm_mb']:.0f} MB), {r['seconds']:.1f} s")
        mem = child('memory', {'spec': cases['linear of 4 models'], 'out': str(tmp / 'mem')})
        lines.append(f"for contrast, merge_state_dicts (all 4 loaded first), linear: peak RSS {mem['maxrss_mb']:.0f} MB = {mem['maxrss_mb'] / size:.2f}x, {mem['seconds']:.1f} s")
        if not a.no_mergekit and shutil.which('mergekit-yaml'):
            from moco.merge import MergeSpec, to_mergekit
            for name in ('linear of 4 models', 'ties of 3 models onto a base (4 inputs)'):
                y = tmp / 'mk.yml'; y.write_text(to_mergekit(MergeSpec(**cases[name])))
                r = child('mergekit', {'yaml': str(y), 'out': str(tmp / 'mk')}); shutil.rmtree(tmp / 'mk')
                lines.append(f"for contrast, mergekit-yaml (in-process, defaults), {name}: peak RSS {r['maxrss_mb']:.0f} MB = {r['maxrss_mb'] / size:.2f}x, {r['seconds']:.1f} s")
        lines.append(f"worst moco.merge peak / one model: {worst:.2f}x (target <= {TARGET}x) -> {'OK' if worst <= TARGET else 'FAIL'}")
    finally: shutil.rmtree(tmp, ignore_errors=True)
    text = '\n'.join(lines) + '\n'
    print(text, end='')
    Path(a.out).write_text(text)
    return 0 if worst <= TARGET else 1

if __name__ == '__main__': sys.exit(main())
