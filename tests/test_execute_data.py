"""Learning to Execute: generated programs, their outputs by running them, the four curricula."""
import re

import numpy as np
import pytest

from rnnkit.data.execute import (ALPHABET, curriculum_levels, make_execute_pairs, make_program, naive_level,
                                 run_program)


def test_a_written_program_prints_what_python_prints():
    assert run_program("a=3\nfor x in range(4):a+=2\nprint((a*3))") == "33"
    assert run_program("print((5 if 2<1 else 7))") == "7"


@pytest.mark.parametrize("length,nesting", [(1, 1), (4, 1), (4, 2), (6, 2), (3, 3)])
def test_programs_use_the_alphabet_and_their_target_is_the_printed_integer(length, nesting):
    rng = np.random.default_rng(length * 10 + nesting)
    for _ in range(50):
        code, output = make_program(rng, length, nesting)
        assert set(code) <= set(ALPHABET)
        assert code.splitlines()[-1].startswith("print(")
        assert re.fullmatch(r"-?\d+", output)
        namespace = {}
        body, last = code.rsplit("\n", 1) if "\n" in code else ("", code)
        exec(body, namespace)  # the program without its print, then the printed expression by eval
        assert str(eval(last[len("print("):-1], namespace)) == output
        # every number that is not a small multiplier or loop count has exactly `length` digits
        if length > 1:
            literals = re.findall(r"\d+", re.sub(r"\*\d+\)|range\(\d+\)", "", code))
            assert literals and all(len(str(v)) == length for v in literals), code


def test_nesting_adds_operations():
    rng = np.random.default_rng(0)
    ops = {n: np.mean([sum(map(make_program(rng, 3, n)[0].count, "+-*<>=")) for _ in range(200)])
           for n in (1, 2, 3)}
    assert ops[1] < ops[2] < ops[3]


def test_curricula():
    rng = np.random.default_rng(0)
    assert curriculum_levels("baseline", 5, 4, 2, 0, rng) == [(4, 2)] * 5
    assert [naive_level(s, 3, 2) for s in range(6)] == [(1, 1), (2, 1), (3, 1), (3, 2), (3, 2), (3, 2)]
    assert curriculum_levels("naive", 3, 3, 2, 1, rng) == [(2, 1)] * 3
    mixed = curriculum_levels("mix", 2000, 4, 2, 0, rng)
    assert {a for a, _ in mixed} == {1, 2, 3, 4} and {b for _, b in mixed} == {1, 2}
    combined = curriculum_levels("combined", 2000, 4, 2, 0, rng)
    share = sum(level == (1, 1) for level in combined) / 2000  # naive stage 0 half the time + mix's 1/8
    assert 0.5 < share < 0.62
    with pytest.raises(ValueError, match="unknown curriculum"):
        curriculum_levels("smart", 1, 1, 1, 0, rng)


def test_pairs_are_seeded_characters():
    a, b = make_execute_pairs(20, 2, 2, seed=3), make_execute_pairs(20, 2, 2, seed=3)
    assert a.source_texts == b.source_texts and a.target_texts == b.target_texts
    assert a.sources[0] == list(a.source_texts[0]) and a.targets[0] == list(a.target_texts[0])
    assert make_execute_pairs(20, 2, 2, seed=4).source_texts != a.source_texts
    with pytest.raises(ValueError, match="length and nesting"):
        make_program(np.random.default_rng(0), 0, 1)
