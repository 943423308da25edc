"""IFEval checkers against every (instruction, kwargs) pair in the real ifeval.json.

For each instruction instance a response that follows it and one that violates it are written from the kwargs; the
checker must tell them apart. This exercises every kwarg spelling the benchmark uses, not just the hand-made cases."""
import pytest
from moco.core import Example, ScoringError
from moco.scoring.ifeval import CHECKERS, check_ifeval, score_ifeval, ifeval_report

from moco.core import DataError
from moco.data import tasks as data
from moco.data.load import load_task
pytest.importorskip('langdetect', reason='IFEval language checks need langdetect')

@pytest.fixture(scope='module')
def items():
    try: t = load_task('ifeval')
    except DataError as e: pytest.skip(f'ifeval.json not available ({type(e).__name__}); set MOCO_DATA_DIR')
    return t.dev + t.test

PROSE = 'This reply stays on topic and explains the idea clearly for the reader'

def _rel(relation, n, good):
    "A count that satisfies (good) or violates the relation against n."
    if relation == 'at least': return n if good else n - 1
    return n - 1 if good else n

def synth(iid, kw, prompt, good):
    "A response that follows (good=True) or violates the instruction."
    g = good
    if iid == 'change_case:capital_word_frequency':
        k = _rel(kw['capital_relation'], kw['capital_frequency'], g)
        return ' '.join(['WORD'] * k + ['plain'] * 3)
    if iid == 'change_case:english_capital':
        return (PROSE + ' today.').upper() if g else PROSE + ' today.'
    if iid == 'change_case:english_lowercase':
        return (PROSE + ' today.').lower() if g else PROSE + ' Today.'
    if iid == 'combination:repeat_prompt':
        p = kw['prompt_to_repeat']
        return f"{p}\n\nHere is my answer." if g else f"Sure! {p}\n\nHere is my answer."
    if iid == 'combination:two_responses':
        return 'First response here.\n******\nA different second response.' if g else 'Only a single response here.'
    if iid == 'detectable_content:number_placeholders':
        n = kw['num_placeholders']
        return 'Dear ' + ' '.join(f'[field{i}]' for i in range(n if g else n - 1)) + ' thanks.'
    if iid == 'detectable_content:postscript':
        return f"Main body.\n\n{kw['postscript_marker']} A short note." if g else 'Main body without any note.'
    if iid == 'detectable_format:constrained_response':
        return 'My answer is yes.' if g else 'Yes, I think so.'
    if iid == 'detectable_format:json_format':
        return '```json\n{"pitch": "Tipperary", "points": [1, 2]}\n```' if g else 'pitch: Tipperary'
    if iid == 'detectable_format:multiple_sections':
        n = kw['num_sections'] if g else kw['num_sections'] - 1
        return '\n\n'.join(f"{kw['section_spliter']} {i+1}\nSome text." for i in range(n)) or 'No sections.'
    if iid == 'detectable_format:number_bullet_lists':
        n = kw['num_bullets'] if g else kw['num_bullets'] + 1
        return 'Intro line.\n' + '\n'.join(f'* point {i}' for i in range(n))
    if iid == 'detectable_format:number_highlighted_sections':
        n = kw['num_highlights'] if g else kw['num_highlights'] - 1
        return 'Text ' + ' and '.join(f'*part {i}*' for i in range(n)) + ' end.'
    if iid == 'detectable_format:title':
        return '<<A Fine Title>>\n\nBody text.' if g else '# A Fine Title\n\nBody text.'
    if iid == 'keywords:existence':
        return 'We mention ' + ', '.join(kw['keywords']) + ' here.' if g else 'We mention nothing relevant.'
    if iid == 'keywords:forbidden_words':
        return 'A clean sentence about quux.' if g else f"A sentence that says {kw['forbidden_words'][0]} openly."
    if iid == 'keywords:frequency':
        k = _rel(kw['relation'], kw['frequency'], g)
        return ' '.join([kw['keyword']] * k + ['filler'])
    if iid == 'keywords:letter_frequency':
        k = _rel(kw['let_relation'], kw['let_frequency'], g)
        other = 'q' if kw['letter'].lower() != 'q' else 'z'
        return kw['letter'] * k + ' ' + other * 3
    if iid == 'length_constraints:nth_paragraph_first_word':
        paras = ['Filler paragraph here.'] * kw['num_paragraphs']
        paras[kw['nth_paragraph'] - 1] = (kw['first_word'].capitalize() if g else 'Different') + ' starts this paragraph.'
        return '\n\n'.join(paras)
    if iid == 'length_constraints:number_paragraphs':
        n = kw['num_paragraphs'] if g else kw['num_paragraphs'] + 1
        return '\n\n***\n\n'.join(f'Paragraph {i} text.' for i in range(n))
    if iid == 'length_constraints:number_sentences':
        k = _rel(kw['relation'], kw['num_sentences'], g)
        return ' '.join(['This is a sentence.'] * k) if k else ''
    if iid == 'length_constraints:number_words':
        k = _rel(kw['relation'], kw['num_words'], g)
        return ' '.join(['word'] * k)
    if iid == 'punctuation:no_comma':
        return 'No commas at all here.' if g else 'Commas, here.'
    if iid == 'startend:end_checker':
        return f"Body text. {kw['end_phrase']}" if g else f"{kw['end_phrase']} Body text."
    if iid == 'startend:quotation':
        return '"All of it quoted."' if g else 'Not quoted at all.'
    raise AssertionError(f'no synthesiser for {iid}')

def test_every_instruction_in_the_data_has_a_checker(items):
    ids = {i for e in items for i in e.get('instruction_id_list')}
    assert len(ids) == 24 and ids <= set(CHECKERS), sorted(ids - set(CHECKERS))

def test_checkers_follow_and_reject_real_kwargs(items):
    n, bad = 0, []
    for e in items:
        for iid, kw in zip(e.get('instruction_id_list'), e.get('kwargs')):
            kw = {k: v for k, v in kw.items() if v is not None}
            if iid == 'length_constraints:number_sentences' and kw['relation'] == 'less than' and kw['num_sentences'] < 2: continue
            one = Example(e.id, e.input, fields={'instruction_id_list': [iid], 'kwargs': [kw]})
            for good in (True, False):
                text = synth(iid, kw, e.input, good)
                if check_ifeval(text, one).strict != [good]: bad.append((iid, kw, good, text[:80]))
            n += 1
    assert n > 700 and not bad, bad[:5]

def test_empty_and_report(items):
    some = items[:40]
    assert all(score_ifeval('', e).value == 0.0 for e in some)
    rep = ifeval_report(some, [''] * len(some))
    assert rep['prompt_strict'] == rep['inst_loose'] == 0.0 and rep['n'] == 40
