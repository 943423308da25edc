"""`moco.train` end to end on a tiny random Llama: a killed run resumes without redoing steps, a finished artifact is reused by
its key, the ids trl trains on are the HF engine's, DPO raises the chosen-vs-rejected margin, GRPO calls the reward with the
rows, adapters are trained further without losing them, full fine-tuning, and input errors before any compute."""
import json, re
from pathlib import Path
import pytest

pytest.importorskip('trl', reason="training needs trl: pip install 'moco-collab[train]'")
torch = pytest.importorskip('torch')
from transformers import TrainerCallback
from moco.core import ConfigError, DataError, ModelError, GenParams, Request
from moco.engines.hf import HFEngine
from moco.serving.pool import ModelPool
from moco.tinymodels import tiny_llama
from moco import train as T

FACTS = [('Capital of Velmora?', 'Quell'), ('Capital of Drossia?', 'Amberlund'), ('Capital of Tarvania?', 'Oskel'),
         ('Capital of Pellucia?', 'Virn')]
ROWS = [{'prompt': q, 'completion': a} for q, a in FACTS]

@pytest.fixture(scope='module')
def tiny():
    return tiny_llama(seed=0)

class Interrupt(TrainerCallback):
    "Raise after optimiser step `n` (as a kill would), once the checkpoint of the steps before it is on disk."
    def __init__(self, n): self.n = n
    def on_step_end(self, args, state, control, **kw):
        if state.global_step >= self.n: raise KeyboardInterrupt(f'killed after step {state.global_step}')

class Steps(TrainerCallback):
    "Record the optimiser steps this run performs."
    def __init__(self): self.done = []
    def on_step_end(self, args, state, control, **kw): self.done.append(state.global_step)

class Inputs(TrainerCallback):
    "Record the token ids of every forward pass of the model being trained."
    def __init__(self): self.seen = []
    def on_train_begin(self, args, state, control, model=None, **kw):
        model.get_input_embeddings().register_forward_pre_hook(lambda mod, a: self.seen.append(a[0].detach().cpu()))

def contains_row(batches, ids:list)->bool:
    "Whether some row of some recorded batch holds `ids` as a contiguous run."
    n = len(ids)
    for b in batches:
        for row in b.tolist():
            if any(row[i:i + n] == ids for i in range(len(row) - n + 1)): return True
    return False

def adapter_tensors(path):
    from safetensors.torch import load_file
    return load_file(str(Path(path) / 'adapter_model.safetensors'))

P = dict(lr=1e-2, batch_size=2, max_steps=8, save_steps=3)

def test_a_killed_run_resumes_from_its_last_checkpoint_and_redoes_no_step(tiny, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        T.sft(tiny, ROWS, tmp_path / 'a', task='facts', params=T.SFTParams(**P), callbacks=[Interrupt(5)])
    art = next((tmp_path / 'a').iterdir())
    assert not (art / T.INFO_FILE).exists() and (art / 'checkpoints' / 'checkpoint-3').is_dir()
    steps = Steps()
    done = T.sft(tiny, ROWS, tmp_path / 'a', task='facts', params=T.SFTParams(**P), callbacks=[steps])
    assert done.info['resumed_from'] == 3 and done.info['steps'] == 8
    assert steps.done == [4, 5, 6, 7, 8]                           # steps 1-3 were not done again
    # and the result is the one an uninterrupted run gets: weights, optimiser, schedule, data order and RNG were restored
    whole = T.sft(tiny, ROWS, tmp_path / 'b', task='facts', params=T.SFTParams(**P))
    a, b = adapter_tensors(done.path), adapter_tensors(whole.path)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    loss = lambda r: [h['loss'] for h in r.info['log'] if 'loss' in h]
    assert loss(done)[-3:] == pytest.approx(loss(whole)[-3:], abs=1e-5)

def test_a_finished_artifact_is_reused_by_key_and_another_task_trains_anew(tiny, tmp_path):
    first = T.sft(tiny, ROWS, tmp_path, task='facts', params=T.SFTParams(**P))
    steps = Steps()
    again = T.sft(tiny, ROWS, tmp_path, task='facts', params=T.SFTParams(**P), callbacks=[steps])
    assert again.reused and again.path == first.path and again.key == first.key and steps.done == []
    other = T.sft(tiny, ROWS, tmp_path, task='facts-2', params=T.SFTParams(**P), callbacks=[steps])
    assert not other.reused and other.path != first.path and steps.done[-1] == 8
    fewer = T.sft(tiny, ROWS[:3], tmp_path, task='facts', params=T.SFTParams(**P))
    assert not fewer.reused and fewer.key != first.key
    assert json.loads((first.path.parent / T.INFO_FILE).read_text())['task'] == 'facts'

def test_sft_trains_on_the_engines_prompt_ids_and_the_model_then_answers(tiny, tmp_path):
    seen = Inputs()
    run = T.sft(tiny, ROWS, tmp_path, task='facts', params=T.SFTParams(lr=1e-2, batch_size=4, max_steps=30, save_steps=50), callbacks=[seen])
    eng = HFEngine(tiny, device='cpu')
    for q, a in FACTS:   # every training row holds the engine's rendering of its prompt, followed by the answer turn
        assert contains_row(seen.seen, eng.render(q)[1] + T.answer_ids(eng.tokenizer, [{'role': 'user', 'content': q}], a))
    losses = [h['loss'] for h in run.info['log'] if 'loss' in h]
    assert losses[-1] < losses[0] / 5
    pool = ModelPool([tiny])
    name = run.add_to(pool, 'tuned')
    assert pool.engine(name).model is run.model and run.add_to(pool, 'tuned') == name   # adding it twice is harmless
    outs = pool.generate(name, [q for q, _ in FACTS], GenParams(max_new_tokens=16, temperature=0))
    assert [o.text for o in outs] == [a for _, a in FACTS] and all(o.finish_reason == 'stop' for o in outs)
    # from disk, in a later run: the same answers and the same cache fingerprint
    later = ModelPool([str(run.path)])
    assert later.fingerprint(str(run.path)) == pool.fingerprint(name)
    assert [o.text for o in later.generate(str(run.path), [q for q, _ in FACTS], GenParams(max_new_tokens=16, temperature=0))] == [o.text for o in outs]

def _margin(model, tok, row)->float:
    "log p(chosen | prompt) - log p(rejected | prompt), on the training tokens."
    return T.answer_logprob(model, tok, row['prompt'], row['chosen']) - T.answer_logprob(model, tok, row['prompt'], row['rejected'])

def test_dpo_raises_the_chosen_over_rejected_margin_on_the_engines_ids(tiny, tmp_path):
    rows = [{'prompt': q, 'chosen': a, 'rejected': 'Paris'} for q, a in FACTS]
    eng = HFEngine(tiny, device='cpu')
    before = [_margin(eng.model, eng.tokenizer, r) for r in rows]
    seen = Inputs()
    run = T.dpo(tiny, rows, tmp_path, task='prefs', params=T.DPOParams(lr=5e-3, batch_size=4, max_steps=10), callbacks=[seen])
    after = [_margin(run.model, run.tokenizer, r) for r in rows]
    assert all(a > b + 1 for a, b in zip(after, before)), (before, after)
    assert contains_row(seen.seen, eng.render(FACTS[0][0])[1])
    assert json.loads((run.path / 'adapter_config.json').read_text())['base_model_name_or_path'] == tiny

def test_grpo_samples_from_the_engines_prompt_ids_scores_with_the_rows_and_raises_the_reward(tiny, tmp_path):
    calls = []
    def fewer_characters(completions, rows):
        "Rewards short answers: a tiny random model can learn it in a few dozen steps."
        calls.append((list(completions), rows))
        return [-len(c) / 20 for c in completions]
    rows = [{'prompt': f'Question {i}: say something.', 'n': i} for i in range(8)]
    seen = Inputs()
    run = T.grpo(tiny, rows, fewer_characters, tmp_path, task='short', callbacks=[seen],
                 params=T.GRPOParams(lr=1e-2, batch_size=8, num_generations=4, max_completion_length=16, max_steps=24))
    assert run.info['steps'] == 24 and len(calls) == 24
    assert all(len(c) == 8 and all(r in rows for r in rs) for c, rs in calls)             # the reward sees the rows, fields intact
    assert all(isinstance(t, str) and '<|end|>' not in t for c, _ in calls for t in c)   # answer texts, cut at the stop token
    eng = HFEngine(tiny, device='cpu')
    assert all(contains_row(seen.seen, eng.render(r['prompt'])[1]) for r in rows[:2])    # sampled from the engine's prompt ids
    r = [h['reward'] for h in run.info['log'] if 'reward' in h]
    assert sum(r[-4:]) / 4 > sum(r[:4]) / 4 + 0.2, r                                   # the learning signal gets through
    # the reward function is part of the key: another one trains anew
    def constant(completions, rows): return [0.0] * len(completions)
    other = T.grpo(tiny, rows, constant, tmp_path, task='short', params=T.GRPOParams(lr=1e-2, batch_size=8, num_generations=4, max_completion_length=16, max_steps=1))
    assert other.key != run.key and not other.reused

def test_an_adapter_is_trained_further_on_its_merged_base_keeping_what_it_learnt(tiny, tmp_path):
    first = T.sft(tiny, ROWS[:2], tmp_path, task='a', params=T.SFTParams(lr=1e-2, batch_size=2, max_steps=25))
    second = T.sft(str(first.path), ROWS[2:], tmp_path, task='b', params=T.SFTParams(lr=1e-2, batch_size=2, max_steps=25))
    base = second.path.parent / 'base'
    assert json.loads((second.path / 'adapter_config.json').read_text())['base_model_name_or_path'] == str(base)
    g = GenParams(max_new_tokens=16, temperature=0)
    merged = HFEngine(str(base), device='cpu').generate([q for q, _ in FACTS[:2]], g)
    assert [c.text for c in merged] == [c.text for c in HFEngine(str(first.path), device='cpu').generate([q for q, _ in FACTS[:2]], g)]
    assert [c.text for c in HFEngine(str(second.path), device='cpu').generate([q for q, _ in FACTS[2:]], g)] == [a for _, a in FACTS[2:]]

def test_full_fine_tuning_writes_a_whole_model_the_pool_loads(tiny, tmp_path):
    run = T.sft(tiny, ROWS, tmp_path, task='facts', params=T.SFTParams(lora=False, lr=3e-3, batch_size=4, max_steps=25))
    assert (run.path / 'config.json').exists() and not (run.path / 'adapter_config.json').exists()
    pool = ModelPool([])
    name = run.add_to(pool)
    assert pool.generate(name, [FACTS[0][0]], GenParams(max_new_tokens=16, temperature=0))[0].text == FACTS[0][1]
    d = T.dpo(tiny, [{'prompt': q, 'chosen': a, 'rejected': 'Paris'} for q, a in FACTS], tmp_path, task='prefs',
              params=T.DPOParams(lora=False, lr=1e-3, batch_size=4, max_steps=2))
    assert (d.path / 'config.json').exists()

def test_bad_input_fails_in_one_sentence_before_any_compute(tiny, tmp_path):
    cases = [(lambda: T.sft(tiny, [], tmp_path, task='t'), DataError, 'SFT data is empty'),
             (lambda: T.sft(tiny, [{'prompt': 'q'}], tmp_path, task='t'), DataError, "SFT row 0 has neither"),
             (lambda: T.sft(tiny, ROWS, tmp_path, task=''), ConfigError, 'Name the `task`'),
             (lambda: T.sft(tiny, ROWS, None, task='t'), ConfigError, 'Give `workdir`'),
             (lambda: T.sft(tiny, ROWS, tmp_path, task='t', params=T.SFTParams(lora_targets=('c_attn',))), ModelError, 'c_attn not found'),
             (lambda: T.sft(tiny, [{'prompt': 'word ' * 300, 'completion': 'x'}], tmp_path, task='t', params=T.SFTParams(max_length=64)),
              DataError, 'more than max_length 64'),
             (lambda: T.sft('/no/such/model', ROWS, tmp_path, task='t'), ModelError, 'does not exist'),
             (lambda: T.dpo(tiny, [{'prompt': 'q', 'chosen': 'a'}], tmp_path, task='t'), DataError, 'lacks `rejected`'),
             (lambda: T.grpo(tiny, [{'prompt': 'q'}], 'not a function', tmp_path, task='t'), ConfigError, 'must be a function'),
             (lambda: T.grpo(tiny, [{'prompt': 'q'}], len, tmp_path, task='t', params=T.GRPOParams(batch_size=3)), ConfigError, 'multiple of num_generations')]
    for fn, exc, msg in cases:
        with pytest.raises(exc, match=re.escape(msg)) as e: fn()
        assert '\n' not in str(e.value) and str(e.value).endswith('.'), str(e.value)   # one sentence
    assert not any(tmp_path.iterdir())                               # nothing was written: every check came before compute
