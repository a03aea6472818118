"""Tests for mindlib.decoder: subject-index checks, the nn.Linear initialisation, parameter counts."""

import pytest
import torch
from torch import nn

from mindlib.decoder import check_subject_indices, n_parameters, uniform_parameter


def test_check_subject_indices_names_the_range_and_the_fix():
    check_subject_indices(torch.tensor([0, 2, 2]), 3)
    check_subject_indices(torch.zeros(0, dtype=torch.long), 3)  # an empty batch has nothing to check
    for bad in ([0, 3], [-1, 1]):
        with pytest.raises(ValueError, match=r"outside \[0, 3\); call add_subject\(\)"):
            check_subject_indices(torch.tensor(bad), 3)
    with pytest.raises(ValueError, match=r"shape \(B,\), got shape \(2, 1\)"):
        check_subject_indices(torch.tensor([[0], [1]]), 3)


@pytest.mark.parametrize("fan_in,fan_out", [(5, 3), (64, 2)])
def test_uniform_parameter_draws_what_nn_linear_draws(fan_in, fan_out):
    """Same generator state, same numbers as torch's own ``nn.Linear(fan_in, fan_out)``, weight then bias."""
    torch.manual_seed(7)
    linear = nn.Linear(fan_in, fan_out)
    torch.manual_seed(7)
    weight = uniform_parameter((fan_out, fan_in), fan_in)
    bias = uniform_parameter((fan_out,), fan_in)
    assert isinstance(weight, nn.Parameter) and weight.requires_grad
    torch.testing.assert_close(weight, linear.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(bias, linear.bias, rtol=0, atol=1e-6)
    big = uniform_parameter((20_000,), fan_in).detach()  # the bound: 1/sqrt(fan_in), nearly reached
    assert big.abs().max() <= fan_in**-0.5 and big.abs().max() > 0.99 * fan_in**-0.5


def test_n_parameters_counts_all_or_only_the_trainable():
    module = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))  # 4·3 + 3 and 3·2 + 2 parameters
    assert n_parameters(module, trainable_only=True) == n_parameters(module, trainable_only=False) == 23
    module[1].weight.requires_grad_(False)
    assert n_parameters(module, trainable_only=False) == 23
    assert n_parameters(module, trainable_only=True) == 17
