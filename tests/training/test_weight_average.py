"""The moving average of the weights (napari_polyp/training/weight_average.py)."""
import pytest
import torch
import torch.nn as nn

from napari_polyp.training.weight_average import WeightAverage


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    net[2].weight.requires_grad_(False)  # frozen: not averaged
    return net


def test_the_average_follows_the_weights_with_a_warm_up():
    net = _net()
    average = WeightAverage(net, decay=0.9)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    average.update(net)  # first update: decay min(0.9, 1/10) = 0.1
    torch.testing.assert_close(average.shadow["0.weight"], start + 0.9)
    average.update(net)  # second: min(0.9, 2/11)
    torch.testing.assert_close(average.shadow["0.weight"], start + 1.0 - 0.1 * 2 / 11)
    assert "2.weight" not in average.shadow and "1.running_mean" in average.shadow
    assert "1.num_batches_tracked" not in average.shadow  # integers are not averaged


def test_applied_swaps_the_average_in_and_back_out():
    net = _net()
    average = WeightAverage(net, decay=0.5)
    own = net[0].weight.detach().clone()
    average.shadow["0.weight"].fill_(7.0)
    with average.applied(net) as swapped:
        assert swapped is net and (net[0].weight == 7.0).all()
    torch.testing.assert_close(net[0].weight.detach(), own)


def test_state_round_trip_and_mismatch():
    net = _net()
    average = WeightAverage(net, decay=0.99)
    average.update(net)
    again = WeightAverage(_net(), decay=0.99)
    again.load_state_dict(average.state_dict())
    assert again.updates == 1 and all(torch.equal(again.shadow[k], v) for k, v in average.shadow.items())
    with pytest.raises(ValueError, match="does not fit"):
        WeightAverage(nn.Linear(3, 4), 0.99).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(net, decay=1.0)
