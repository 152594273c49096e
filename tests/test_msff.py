import pytest
import torch
from torch import nn

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import BuildContext, Site
from samfx_plugins.msff.config import MSFFConfig
from samfx_plugins.msff.module import MSFF, build_msff, msff_cost


def _site(channels=16, layout="bchw"):
    return Site("cnn.out", nn.Identity(), layout, channels, channels, (8, 8))


def test_shape_kept_and_parameter_count():
    m = MSFF(16, [6, 12, 18], "batch")
    y = torch.randn(2, 16, 8, 8)
    assert m(None, y).shape == y.shape
    convs = sum(p.numel() for n, p in m.named_parameters() if p.dim() == 4)
    weights, macs = msff_cost(16, 8, 8)
    assert convs == weights == 2 * 16 * 16 + 27 * 16 * 16
    assert macs == weights * 64
    total = sum(p.numel() for p in m.parameters())
    assert total == weights + 16 + 4 * 2 * 16  # squeeze bias + 4 BatchNorms (weight, bias)


def test_cascade_follows_the_report():
    m = MSFF(4, [1, 2, 3], "none").eval()
    y = torch.randn(1, 4, 9, 9)
    sq = m.squeeze(y)
    x1 = m.cascade[0](sq)
    x2 = m.cascade[1](sq + x1)
    x3 = m.cascade[2](sq + x2)
    torch.testing.assert_close(m(None, y), torch.relu(m.branch0(y) + x3))
    assert [c[0].dilation for c in m.cascade] == [(1, 1), (2, 2), (3, 3)]
    assert [c[0].padding for c in m.cascade] == [(1, 1), (2, 2), (3, 3)]


def test_build_checks_site_layout_and_options():
    m = build_msff(MSFFConfig(), BuildContext(), _site(8))
    assert isinstance(m.branch0[1], nn.BatchNorm2d)
    with pytest.raises(RecipeError, match="site 'cnn.out' has layout 'bhwc'; MSFF needs a feature map"):
        build_msff(MSFFConfig(), BuildContext(), _site(8, "bhwc"))
    with pytest.raises(RecipeError, match="msff.norm: 'group' is not one of batch, layer, none"):
        build_msff(MSFFConfig(norm="group"), BuildContext(), _site(8))
