"""Our small ViT layers are timm's, bit for bit (timm itself is not imported by the model: see lib/models/vit.py)."""
from __future__ import annotations

import pytest
import torch

from lib.models.vit import DropPath, Mlp, PatchEmbed, resize_pos_embed_grid

timm_layers = pytest.importorskip("timm.layers")


def test_patch_embed_and_mlp_match_timm_with_the_same_keys():
    torch.manual_seed(0)
    ours, theirs = PatchEmbed(16, 3, 64), timm_layers.PatchEmbed(img_size=None, patch_size=16, in_chans=3, embed_dim=64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    images = torch.randn(2, 3, 128, 96)
    assert torch.equal(ours(images), theirs(images))

    mlp, timm_mlp = Mlp(64, 256), timm_layers.Mlp(64, 256)
    assert list(mlp.state_dict()) == list(timm_mlp.state_dict())
    timm_mlp.load_state_dict(mlp.state_dict())
    tokens = torch.randn(2, 50, 64)
    assert torch.equal(mlp(tokens), timm_mlp(tokens))


@pytest.mark.parametrize(("old", "new"), [(14, 8), (14, 16), (14, 24), (16, 8), (8, 4), (14, 14)])
def test_positional_embedding_resize_matches_timm(old, new):
    pos_embed = torch.randn(1, old * old, 96, generator=torch.Generator().manual_seed(old * 100 + new))
    theirs = timm_layers.resample_abs_pos_embed(pos_embed, (new, new), (old, old), num_prefix_tokens=0,
                                                antialias=False)
    assert torch.equal(resize_pos_embed_grid(pos_embed, (new, new)), theirs)


def test_drop_path_draws_the_same_mask_as_timm():
    """Same random draws; the scaling rounds differently in the last bit ((x*m)/keep vs x*(m/keep)), which
    is why the released numerics (ours) are kept."""
    x = torch.randn(64, 10, 32)
    ours, theirs = DropPath(0.3).train(), timm_layers.DropPath(0.3).train()
    torch.manual_seed(5)
    a = ours(x)
    torch.manual_seed(5)
    b = theirs(x)
    assert torch.equal(a == 0, b == 0) and 0 < int((a[:, 0, 0] == 0).sum()) < 64
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert torch.equal(ours.eval()(x), x)
