import pytest
from hypothesis import given

from lipverify.strategies import networks


@pytest.mark.parametrize("kwargs", [{"min_depth": 0}, {"min_width": 3, "max_width": 2}, {"activations": ("softmax",)},
                                    {"activations": ()}, {"max_inputs": 1.5}])
def test_bad_arguments_are_rejected_when_the_strategy_is_built(kwargs):
    with pytest.raises(ValueError):
        networks(**kwargs).validate()


@given(networks(min_depth=2, max_depth=3, max_width=2, max_inputs=2, max_outputs=1, exact=True))
def test_networks_respect_their_bounds(net):
    dense = [layer for layer in net.layers if hasattr(layer, "n_out")]
    assert 2 <= len(dense) <= 3 and net.n_in <= 2 and net.n_out == 1 and net.is_exact
