"""moco.scoring.evaluate on the real benchmark files and on hostile or tricky responses.

Every dev split of every answer-scored dataset must score 1.0 when fed its own gold answers written the way models
write them, and no more than chance agreement when the golds are shuffled. Judge-, sandbox- and IFEval-scored task
types are checked for what is meaningful there (see test_evaluate_tasks.py and test_evaluate_ifeval.py)."""
import os, random, time
import pytest
from moco.core import Example, Score, ScoringError
from moco.scoring.evaluate import (format_prompt, extract_answer, answer_key, answers_match, score_output, score_outputs,
                           extract_choice, extract_short_answer, parse_number, gold_aliases)

from moco.core import DataError
from moco.data import tasks as data
from moco.data.load import load_task

def _task(name):
    try: return load_task(name)
    except DataError as e: pytest.skip(f'{name}: benchmark file not available ({type(e).__name__}); set MOCO_DATA_DIR')

ANSWER_SETS = ['agieval', 'agieval_tiny', 'arc_challenge', 'bixbench', 'blend', 'chembench', 'communitybench',
               'culturalbench_hard', 'gpqa_diamond', 'gpqa_extended', 'gpqa_main', 'kaleidoscope', 'lab_bench', 'medmcqa',
               'medqa', 'mixeval', 'mmlu_redux', 'mmluprox', 'sciencemeter', 'tablemwp_multiple_choice', 'truthfulqa',
               'bbh', 'culturebench', 'gsm8k', 'math', 'pubmedqa', 'sciriff', 'tablemwp_free_text', 'theoremqa',
               'popqa', 'wikidyk', 'apex_shortlist', 'scitarc']

def test_every_dataset_is_covered():
    "The answer-scored sets here plus the ones tested elsewhere are all 45 benchmark files."
    elsewhere = {'alpacaeval', 'human_interest', 'infinite_chat_open', 'value_drifts', 'wildchat', 'coconot', 'humaneval',
                 'mbpp', 'infinite_chat_diversity', 'ifeval', 'kernelbench', 'smdd'}
    names = {n for n, info in data.DATASETS.items() if not n.startswith('zoo_') and getattr(info, 'task_type', '') != 'gene_ranking'}
    assert set(ANSWER_SETS) | elsewhere >= names, sorted(names - set(ANSWER_SETS) - elsewhere)
    assert len(set(ANSWER_SETS) | elsewhere) == 45

def mc_styles(L, text):
    return [f"The answer is ({L}).", f"**{L}**", f"\\boxed{{{L}}}", f"Answer: {L}", f"Answer: **{L}**", f"I think {L}",
            f"Let me think about each option in turn; the others do not fit.\n\nSo the final answer is {L}.", f"{L}) {text}",
            f"{L}, because it fits best."]

def em_styles(g):
    g = ' '.join(str(g).split())
    s = [f"Answer: {g}", f"We reason about the question step by step first.\n\nThe answer is {g}.", f"**Final Answer:** {g}"]
    if g.count('{') == g.count('}'):
        s += [f"... so the final answer is $\\boxed{{{g}}}$.", f"Working it out carefully:\n\\boxed{{{g}}}"]
    if '$' not in g: s.append(f"... so the final answer is ${g}$")
    return s

def _native(task):
    "The rule-scored task type to use for a dataset (general_verifier sets are rule-checked here)."
    if task.task_type != 'general_verifier': return task.task_type
    return 'multiple_choice' if task.dev[0].choices else 'exact_match'

@pytest.mark.parametrize('name', ANSWER_SETS)
def test_gold_answers_score_one(name):
    task = _task(name)
    tt, dev = _native(task), [e for e in task.dev if e.gold not in (None, '') and e.gold != []]
    assert len(dev) >= 0.95 * len(task.dev)  # only math has a few rows without a gold answer
    n_styles = 9 if tt == 'multiple_choice' else 6
    for k in range(n_styles):
        exs, texts = [], []
        for e in dev:
            g = gold_aliases(e.gold)[0] if tt == 'f1_match' else e.gold
            styles = mc_styles(g, e.choices[g]) if tt == 'multiple_choice' else em_styles(g)
            if k < len(styles): exs.append(e); texts.append(styles[k])
        scores = score_outputs(exs, texts, tt, task_name=name)
        bad = [(t, e.gold, s) for e, t, s in zip(exs, texts, scores) if s.value != 1.0]
        assert not bad, f"{name} style {k}: {len(bad)} gold answers scored < 1, e.g. {bad[:3]}"

@pytest.mark.parametrize('name', ANSWER_SETS)
def test_shuffled_golds_score_chance(name):
    "Shuffled golds earn credit only where the shuffled answer really equals the right one."
    task = _task(name)
    tt, dev = _native(task), [e for e in task.dev if e.gold not in (None, '') and e.gold != []]
    golds = [e.gold for e in dev]
    random.Random(0).shuffle(golds)
    if tt == 'f1_match': texts = [f"Answer: {gold_aliases(g)[0]}" for g in golds]
    else: texts = [f"Answer: {g}" for g in golds]
    got = sum(s.value for s in score_outputs(dev, texts, tt, task_name=name if name != 'culturebench' else None)) / len(dev)
    if tt == 'multiple_choice': same = sum(a == e.gold for a, e in zip(golds, dev)) / len(dev)
    elif tt == 'f1_match': same = 0.0
    else: same = sum(answers_match(str(a), e.gold, e.get('answer_type')) for a, e in zip(golds, dev)) / len(dev)
    assert got <= same + 0.03, (name, got, same)
    assert got < 0.6

def test_culturebench_groups_by_question():
    task = _task('culturebench')
    dev = task.dev[:300]
    right = score_outputs(dev, [f"\\boxed{{{e.gold}}}" for e in dev], 'exact_match', 'culturebench')
    assert all(s.value == 1 for s in right)
    flip = {'True': 'False', 'False': 'True'}
    texts = [f"\\boxed{{{e.gold}}}" for e in dev]
    texts[0] = f"\\boxed{{{flip[dev[0].gold]}}}"  # one wrong item sinks its whole question group
    qid = dev[0].get('question_id')
    group = [i for i, e in enumerate(dev) if e.get('question_id') == qid]
    s = score_outputs(dev, texts, 'exact_match', 'culturebench')
    assert len(group) > 1 and all(s[i].value == 0 for i in group)
    assert all(s[i].value == 1 for i in range(len(dev)) if i not in group)
    assert s[group[-1]].detail.startswith(f'group {qid}:')

def test_prompts_match_the_fixed_formats():
    mc = _task('arc_challenge').dev[0]
    p = format_prompt(mc, 'multiple_choice')
    assert p.startswith(mc.input + '\n\nA) ') and p.endswith('\n\nAnswer with the letter of the correct option, as "Answer: X".')
    em = _task('gsm8k').dev[0]
    assert format_prompt(em, 'exact_match') == em.input.rstrip() + '\n\nGive your final answer as \\boxed{ANSWER}.'
    assert format_prompt(_task('alpacaeval').dev[0], 'reward_model') == _task('alpacaeval').dev[0].input
    sc = _task('scitarc').dev[0]
    assert format_prompt(sc, 'general_verifier').endswith('\\boxed{ANSWER}.')

# ---------------------------------------------------------------- tricky responses, with the expected extraction
OPTS = {'A': 'Berlin', 'B': 'Madrid', 'C': 'Paris', 'D': 'Rome'}
MC_CASES = [  # every multiple-choice failure of the reference listed in the spec, then more
    ("A good question. The answer is C.", 'C'), ("Let me look at the data. Answer: C", 'C'),
    ("The answer is (C). London is wrong.", 'C'), ("I think C", 'C'), ("**C**", 'C'), ("Answer: **C**", 'C'),
    ("\\boxed{C}", 'C'), ("The answer is a bit tricky... Paris", 'C'), ("Option B) is wrong; I pick D.", 'D'),
    ("B, because Madrid is big", 'B'), ("(C)", 'C'), ("C)", 'C'), ("C.", 'C'), ("c", 'C'), ("Answer: (b)", 'B'),
    ("**Answer:** C", 'C'), ("$\\boxed{\\text{C}}$", 'C'), ("\\boxed{(B)}", 'B'), ("\\boxed{Paris}", 'C'),
    ("The correct option is D.", 'D'), ("The correct answer is option C", 'C'), ("D is correct.", 'D'),
    ("First I considered (A), but the answer is D.", 'D'), ("The answer is B. Wait, no. The answer is C.", 'C'),
    ("Final answer: C\n\nWhy not A? Berlin is in Germany.", 'C'), ("<think>Answer: A</think>\nAnswer: D", 'D'),
    ("A lot of thought went into this.", None), ("I am not sure.", None), ("", None), ("The answer is E.", None),
    ("It must be Madrid.", 'B'), ("Answer: Rome", 'D'), ("I'd go with B.", 'B'), ("I choose option A.", 'A'),
    ("The answer is A because Berlin is the capital.", 'A'), ("A is the right choice.", 'A'), ("Answer: A", 'A'),
]

@pytest.mark.parametrize('resp,want', MC_CASES)
def test_mc_tricky(resp, want):
    assert extract_choice(resp, OPTS) == want
    assert extract_answer(resp, 'multiple_choice', Example('x', 'q', choices=OPTS)) == want

def test_mc_options_that_contain_letters():
    ch = {'A': 'Vitamin A', 'B': 'Vitamin B12', 'C': 'Both A and B', 'D': 'Protein C'}
    assert extract_choice("Answer: Vitamin A", ch) == 'A'
    assert extract_choice("C) Both A and B", ch) == 'C'
    assert extract_choice("It is Protein C.", ch) == 'D'
    assert extract_choice("D) Protein C", ch) == 'D'

def test_mc_many_and_numeric_labels():
    ten = {L: f'opt {L.lower()}' for L in 'ABCDEFGHIJKL'}
    assert extract_choice("Answer: J", ten) == 'J' and extract_choice("The answer is (L).", ten) == 'L'
    assert extract_choice("Answer: I", ten) == 'I' and extract_choice("I think so.", ten) is None
    num = {'1': 'red', '2': 'green', '3': 'blue'}
    assert extract_choice("The answer is (2).", num) == '2' and extract_choice("Answer: 3", num) == '3'
    assert extract_choice("The answer is 2.5 units", num) is None

EM_CASES = [  # (response, gold, answer_type, expected score) — every exact-match failure of the reference, then more
    ("\\boxed{\\frac{1}{2}}", '0.5', None, 1), ("\\boxed{-3.5}", '35', None, 0), ("\\boxed{1/2}", '12', None, 0),
    ("The answer is 50%.", '50', None, 1), ("... so the final answer is $\\frac{1}{2}$", '\\frac{1}{2}', None, 1),
    ("Answer: 42", '42', None, 1), ("Answer: 42 apples", '42', None, 1), ("Answer: $42.00", '42', None, 1),
    ("The answer is 165,000.", '165,000', None, 1), ("\\boxed{165000}", '165,000', None, 1),
    ("\\boxed{\\dfrac{3}{8}}", '\\dfrac38', None, 1), ("\\boxed{0.375}", '\\dfrac38', None, 1),
    ("\\boxed{3.54 \\times 10^{-7}}", "3.54e-07", "float", 1), ("\\boxed{3.5 \\times 10^{-7}}", "3.54e-07", "float", 0), ("\\boxed{3.2e-7}", '3.54e-07', 'float', 0),
    ("\\boxed{12.0}", '12', 'integer', 1), ("\\boxed{13}", '12', 'integer', 0), ("Answer: Yes.", 'True', 'bool', 1),
    ("Answer: no", 'True', 'bool', 0), ("\\boxed{[1, 6]}", '[1, 6]', 'list of integer', 1),
    ("\\boxed{[6, 1]}", '[1, 6]', 'list of integer', 0), ("\\boxed{(b)}", '(b)', 'option', 1),
    ("\\boxed{\\frac{\\sqrt3}{2}}", '\\frac{\\sqrt{3}}{2}', None, 1), ("\\boxed{60^\\circ}", '60^\\circ', None, 1),
    ("\\boxed{x^2 + 12x + 35}", 'x^2 + 12x + 35', None, 1), ("\\boxed{x^2+12x+36}", 'x^2 + 12x + 35', None, 0),
    ("\\boxed{3, 1}", '1,3', None, 1), ("\\boxed{(-4, 8)}", '(-4,8)', None, 1), ("\\boxed{(8, -4)}", '(-4,8)', None, 0),
    ("To answer this we add.\nThe answer is 7", '7', None, 1), ("The answer is 3.5. This is because of X.", '3.5', None, 1),
    ("Answer: CompareOrContrast", 'CompareOrContrast', None, 1), ("Answer: maybe", 'yes', None, 0),
    ("\\boxed{\\begin{pmatrix} 3 \\\\ 1 \\end{pmatrix}}", '\\begin{pmatrix} 3 \\\\ 1 \\end{pmatrix}', None, 1),
    ("no idea", '7', None, 0), ("", '7', None, 0),
]

@pytest.mark.parametrize('resp,gold,atype,want', EM_CASES)
def test_em_tricky(resp, gold, atype, want):
    ex = Example('x', 'q', gold=gold, fields={'answer_type': atype} if atype else {})
    assert score_output(ex, resp, 'exact_match').value == want, (resp, extract_short_answer(resp), gold)

def test_f1_aliases_and_partial_credit():
    ex = Example('x', 'q', gold=['Berlin', 'Berlin, Germany'])
    assert score_output(ex, "The answer is Berlin, Germany.", 'f1_match').value == 1.0
    ex = Example('x', 'q', gold='["Lou Reed", "Lewis Allan Reed"]')
    assert score_output(ex, "\\boxed{Lou Reed}", 'f1_match').value == 1.0
    assert 0 < score_output(ex, "Answer: Reed", 'f1_match').value < 1
    assert score_output(ex, "Answer: George Harrison", 'f1_match').value == 0.0

def test_answer_keys_vote_together():
    same = [['42', '42.0', '$42', '42 apples', '**42**', '42.'], ['\\frac{1}{2}', '0.5', '1/2', '\\dfrac12'],
            ['yes', 'True', 'Yes.'], ['The Eiffel Tower', 'eiffel tower.'], ['x + 1', 'x+1']]
    for group in same: assert len({answer_key(a, 'exact_match') for a in group}) == 1, group
    assert answer_key('-3.5', 'exact_match') != answer_key('35', 'exact_match')
    assert answer_key('0.5', 'exact_match') != answer_key('50%', 'exact_match')
    assert answer_key('c', 'multiple_choice') == 'C'
    # the key of the answer extracted from a response is what majority vote counts
    votes = [extract_answer(r, 'exact_match') for r in ["\\boxed{42}", "The answer is 42.", "Answer: 41", "**Final Answer:** $42$"]]
    keys = [answer_key(v, 'exact_match') for v in votes]
    assert max(set(keys), key=keys.count) == ('num', 42.0) and keys.count(('num', 42.0)) == 3

def test_text_generation_and_errors():
    assert score_output(Example('x', 'q', split='test'), 'an essay', 'text_generation') == Score(0.0, None, 'not scored')
    with pytest.raises(ScoringError, match='one output per item'): score_outputs([Example('x', 'q')], ['a', 'b'], 'exact_match')
    with pytest.raises(ScoringError, match='multiple_choice'): score_outputs([Example('x', 'q')], ['a'], 'multiple_choise')
    assert score_outputs([], [], 'exact_match') == []
    assert score_output(Example('x', 'q', gold='1'), None, 'exact_match').value == 0.0

def test_coding_dispatches_to_the_sandbox():
    pytest.importorskip('moco.scoring.sandbox')
    ex = Example('t', 'Write double(x).', gold='def check(candidate):\n    assert candidate(2) == 4\n',
                 fields={'test': 'def check(candidate):\n    assert candidate(2) == 4\n'})
    good, bad = score_outputs([ex, ex], ["```python\ndef double(x):\n    return 2 * x\n```", "```python\ndef double(x):\n    return x\n```"], 'coding')
    assert (good.value, bad.value) == (1.0, 0.0), (good, bad)

def test_hostile_inputs_stay_fast():
    rng = random.Random(0)
    pieces = ['A', ' ' * 3000, '\n' * 2000, 'answer is', 'final answer', ':', '(', ')', '*' * 2000, '\\boxed{', '}', '{', '$',
              '1' * 2000, '.', ',', 'I think ', '\t' * 2000, 'Answer: ', 'option ', '\\frac{', '-', '%', '[', ']']
    worst = 0.0
    for _ in range(120):
        t = ''.join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        start = time.perf_counter()
        extract_choice(t, OPTS); extract_short_answer(t); answer_key(t, 'exact_match'); answers_match(t, '[1, 2]')
        worst = max(worst, time.perf_counter() - start)
    assert worst < 1.0, worst
    big = 'The answer is B. ' * 20000 + 'Final answer: C'
    assert extract_choice(big, OPTS) == 'C' and parse_number('9' * 10000) is None
