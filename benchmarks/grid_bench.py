"""Issue #15's grid target, measured: benchmarks/zoo_grid.yaml (6 methods x 2 zoo tasks x 1 pool) run cold into a fresh
grid folder and generation cache, then again (everything finished and cached), then the duplicate-generation check and the
report. Prints wall times and the machine. Usage: python benchmarks/grid_bench.py [OUT_DIR]"""
import json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent

def cpu()->str:
    try: return next(l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name'))
    except Exception: return platform.processor()

def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix='moco-grid-'))
    import yaml
    grid = yaml.safe_load((HERE / 'zoo_grid.yaml').read_text())
    grid['defaults']['cache_dir'] = str(out / 'cache')          # a fresh cache: the cold run pays for everything
    from moco.bench import bench, duplicate_generations
    from moco.report import report
    t0 = time.time(); cold = bench(grid, out / 'grid', progress=False); t_cold = time.time() - t0
    t0 = time.time(); warm = subprocess.run([sys.executable, '-c', f"from moco.bench import bench; import yaml, json; g = json.loads({json.dumps(json.dumps(grid))}); print(bench(g, {str(out / 'grid')!r}, progress=False))"],
                                            capture_output=True, text=True); t_warm = time.time() - t0
    dups = duplicate_generations(out / 'grid')
    rep = report(out / 'grid')
    res = {'machine': f"{cpu()}, {os.cpu_count()} cores", 'load_before': os.getloadavg(), 'cells': len(cold.cells),
           'states': sorted(set(cold.states.values())), 'errors': cold.errors, 'cold_seconds': round(t_cold, 1),
           'rerun_seconds_whole_process': round(t_warm, 1), 'rerun_output': warm.stdout.strip()[-300:],
           'duplicate_generations': len(dups), 'beats': rep.stats['beats'], 'largest_gain': rep.stats['largest_gain'],
           'threads': os.environ.get('OMP_NUM_THREADS', 'default')}
    print(json.dumps(res, indent=1))
    print(rep.tables['main'].markdown()); print(rep.tables['methods'].markdown())
    (HERE / 'grid_bench.last.json').write_text(json.dumps(res, indent=1) + '\n')

if __name__ == '__main__': main()
