"""The zoo's recipe on other seeds and another thread count: build the quickstart members (base and the three specialists,
with arith-early) from scratch for each variant, and report each member's check scores, the build time and the load.

    python benchmarks/zoo_variants.py            # writes benchmarks/zoo_variants.last.json

A different thread count changes the float reduction order the way another CPU does; a different seed changes the
initial weights and the data order. The recipe should clear its bars (each specialist >= 0.95 on its family) in every one."""
import json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

VARIANTS = [('seed 0, 2 threads', 0, 2), ('seed 0, 1 thread', 0, 1), ('seed 1, 2 threads', 1, 2), ('seed 2, 2 threads', 2, 2)]
CHILD = """
import json, os, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from moco.zoo import builder as zoo
t0 = time.time(); root = zoo.build(seed=int(sys.argv[1]), progress=False, members=['zoo/arith', 'zoo/capitals', 'zoo/habitats'])
m = zoo.manifest(root)
print(json.dumps(dict(seconds=round(time.time() - t0, 1), checks={k: v['check'] for k, v in m['members'].items() if 'check' in v})))
"""

def cpu_name()->str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown'

def main():
    out = dict(cpu=cpu_name(), cpu_count=os.cpu_count(), variants={})
    for label, seed, threads in VARIANTS:
        with tempfile.TemporaryDirectory() as home:
            load0 = os.getloadavg()
            r = subprocess.run([sys.executable, '-c', CHILD, str(seed), str(threads)], capture_output=True, text=True,
                               env=dict(os.environ, MOCO_HOME=home, HF_HUB_OFFLINE='1', OMP_NUM_THREADS=str(threads)))
            if r.returncode: sys.exit(f"{label} failed:\n{r.stderr[-3000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            out['variants'][label] = dict(seed=seed, threads=threads, load_avg_before=load0, load_avg_after=os.getloadavg(), **res)
            print(label, res['seconds'], 's', {k: v for k, v in res['checks'].items()}, flush=True)
    Path(__file__).with_name('zoo_variants.last.json').write_text(json.dumps(out, indent=1))

if __name__ == '__main__': main()
