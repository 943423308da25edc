"""Weight-space search cost: one particle-swarm iteration over 4 zoo particles on 40 dev items, and how much of it is
spent getting each candidate's weights into the model.

    python benchmarks/swarm_bench.py [--save]      # --save writes benchmarks/swarm_bench.last.txt

The particles are Model Swarms' particles over zoo/base, zoo/arith, zoo/capitals, zoo/habitats (full models, 2M
parameters each), scored on the first 40 dev items of zoo_mix (greedy, 40 new tokens). Iteration 1 evaluates the
members themselves (the shared dev pass, on their own engines); iterations 2 and 3 are blends Σ cᵢ·θᵢ, each built on
the CPU and swapped into one resident model in memory (`WeightCandidates`, `ModelPool.swap_weights`).
Target: candidate swap-in time (build + copy into the model) <= 10% of the iteration's wall time.
For scale, the reference's way — write each candidate as a checkpoint and load it as a new model — is timed on one
candidate too. No persistent generation cache: every answer is generated.
"""
import argparse, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')

def machine()->str:
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        info = dict(l.split(':', 1) for l in out.splitlines() if ':' in l)
        name, cpus = info.get('Model name', '?').strip(), info.get('CPU(s)', '?').strip()
        return f"{name}, {cpus} CPUs"
    except Exception: return platform.processor() or '?'

def main(save:bool=False):
    import numpy as np, torch
    from moco.core import GenParams
    from moco.config import EngineSettings
    from moco.data.load import load_task
    from moco.serving.pool import ModelPool
    from moco.scoring.evaluate import score_outputs
    from moco.search import ParticleSwarm, SwarmConfig, WeightCandidates
    from moco.zoo.builder import model_path
    lines = []
    def say(s): print(s, flush=True); lines.append(s)
    models = ['zoo/base', 'zoo/arith', 'zoo/capitals', 'zoo/habitats']
    for m in models: model_path(m)
    task = load_task('zoo_mix'); dev = task.dev[:40]
    g = GenParams(max_new_tokens=40, temperature=0)
    scorer = lambda exs, texts: score_outputs(exs, texts, task.task_type)
    load0 = os.getloadavg()
    pool = ModelPool(models, engine=EngineSettings(device='cpu'), batch_size=40, cache=None)
    t = time.perf_counter(); wc = WeightCandidates(pool, models); t_setup = time.perf_counter() - t
    swarm = ParticleSwarm([np.eye(4)[i] for i in range(4)], SwarmConfig(), seed=0)
    say(f"# python benchmarks/swarm_bench.py  ({machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average before {load0[0]:.2f})")
    say(f"setup (load 4 members + the resident copy, read their tensors): {t_setup:.2f}s; "
        f"{sum(t.numel() for t in wc.states[0].values()) / 1e6:.2f}M parameters per particle")
    ok = True
    for it in (1, 2, 3):
        before = dict(wc.stats)
        t = time.perf_counter()
        scores = [wc.utility(c, task, dev, g, 42, scorer, purpose=f'iteration {it}') for c in swarm.particles()]
        swarm.update(scores)
        wall = time.perf_counter() - t
        d = {k: wc.stats[k] - before[k] for k in wc.stats}
        swap_in = d['build_seconds'] + d['swap_seconds']
        if it == 1:
            say(f"iteration 1 (the 4 members on their own engines, no swap): {wall:.2f}s, dev utilities {[round(s, 3) for s in scores]}")
            continue
        share = swap_in / wall
        ok &= share <= 0.10 and d['swaps'] == 4
        say(f"iteration {it}: {wall:.2f}s for 4 blends x 40 dev items; swap-in {1000 * swap_in:.1f}ms "
            f"(build Σcθ {1000 * d['build_seconds']:.1f}ms + copy into the model {1000 * d['swap_seconds']:.1f}ms, {d['swaps']} swaps) "
            f"= {100 * share:.2f}% of the iteration (target <= 10%) -> {'OK' if share <= 0.10 else 'FAIL'}; "
            f"{'the first swap also keeps a copy of the resident model’s own tensors (once per run); ' if it == 2 else ''}"
            f"generation {d['generate_seconds']:.2f}s; dev utilities {[round(s, 3) for s in scores]}")
    # the reference's way for one candidate: write a checkpoint, load it as a new model
    from moco.engines.hf import HFEngine
    c = swarm.particles()[0]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        eng = pool.engine(models[0]); st = wc.state(c)
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained(model_path(models[0])); m.load_state_dict(st, strict=False)
        m.save_pretrained(d); eng.tokenizer.save_pretrained(d)
        HFEngine(d, device='cpu').close()
        t_disk = time.perf_counter() - t
    t = time.perf_counter(); pool.swap_weights(wc.resident, wc.state(c), wc.fingerprint(c)); t_mem = time.perf_counter() - t
    say(f"one candidate via checkpoint (build, save_pretrained, load a new engine): {t_disk:.2f}s; in memory (build + swap): "
        f"{1000 * t_mem:.1f}ms -> {t_disk / t_mem:.0f}x")
    load1 = os.getloadavg()
    say(f"load average after {load1[0]:.2f} (2 cores; > 2 means other jobs shared the CPU and times are upper bounds)")
    say('RESULT: ' + ('OK' if ok else 'FAIL'))
    pool.close()
    if save: Path(__file__).with_name('swarm_bench.last.txt').write_text('\n'.join(lines) + '\n')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--save', action='store_true')
    main(ap.parse_args().save)
