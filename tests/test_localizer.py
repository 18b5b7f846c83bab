"""The RaSeformer network: shapes, padding, Top-K attention, the release's parameter names."""

import torch

from ratscore.localizer import LocalizerConfig, LocalTopKMHCA, RaSeformer

TINY = LocalizerConfig(input_dim=16, embd_dim=32, fpn_dim=32, head_dim=32)


def test_level_shapes_and_padding_invariance():
    torch.manual_seed(0)
    model = RaSeformer(TINY).eval()
    x = torch.randn(1, 16, 96)
    x[:, :, 70:] = 0  # zero padding, as the release and the chunk runner pad
    mask = (torch.arange(96) < 70)[None, None]
    with torch.no_grad():
        logits, offsets = model(x, mask)
        x2 = torch.cat([x, torch.zeros(1, 16, 32)], dim=2)  # more padding must not change the valid steps
        logits2, _ = model(x2, (torch.arange(128) < 70)[None, None])
    assert [tuple(l.shape) for l in logits] == [(1, 96 // 2 ** l, 14) for l in range(6)]
    assert [tuple(o.shape) for o in offsets] == [(1, 96 // 2 ** l, 2) for l in range(6)]
    assert all((o >= 0).all() for o in offsets)
    for l in range(6):
        n = -(-70 // 2 ** l)
        assert torch.allclose(logits[l][:, :n], logits2[l][:, :n], atol=1e-5)


def test_topk_attention_keeps_centre_and_top_keys():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 20)
    mask = torch.ones(1, 1, 20, dtype=torch.bool)
    centre_only = LocalTopKMHCA(8, 2, 9, keep_ratio=0.1).eval()  # M = 1: attends to the centre key only
    with torch.no_grad():
        out, _ = centre_only(x, mask)
        _, _, v, _ = centre_only._qkv(x, mask)
        expected, _ = centre_only._project(v, mask)
    assert torch.allclose(out, expected, atol=1e-5)
    half = LocalTopKMHCA(8, 2, 9, keep_ratio=0.5).eval()
    full = LocalTopKMHCA(8, 2, 9, keep_ratio=1.0).eval()
    full.load_state_dict(half.state_dict())
    assert half.num_keep == 5
    with torch.no_grad():
        assert not torch.allclose(half(x, mask)[0], full(x, mask)[0])


def test_release_parameter_names():
    keys = RaSeformer(LocalizerConfig(input_dim=16, embd_dim=32, fpn_dim=32, head_dim=32)).state_dict().keys()
    for k in ("backbone.embd.0.conv.weight", "backbone.embd_norm.0.weight", "backbone.stem.0.attn.query_conv.conv.weight",
              "backbone.branch.4.attn.proj.bias", "backbone.branch.0.drop_path_attn.scale", "backbone.stem.1.mlp.3.weight",
              "neck.fpn_norms.5.bias", "cls_head.head.1.conv.weight", "cls_head.cls_head.conv.bias",
              "reg_head.scale.5.scale", "reg_head.offset_head.conv.weight"):
        assert k in keys
