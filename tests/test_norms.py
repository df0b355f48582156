import math

import pytest

from lipverify.norms import parse_norm


@pytest.mark.parametrize("given,expected", [(1, "1"), (2, "2"), ("inf", "inf"), ("1", "1"), ("2", "2"), ("l1", "1"),
                                            ("l2", "2"), ("linf", "inf"), ("LINF", "inf"), (math.inf, "inf")])
def test_accepted_spellings(given, expected):
    assert parse_norm(given) == expected


@pytest.mark.parametrize("bad", [3, 0, "l3", "", True, None, -math.inf])
def test_unknown_norm_lists_valid_ones(bad):
    with pytest.raises(ValueError, match="valid norms are 1, 2, 'inf'"):
        parse_norm(bad)
