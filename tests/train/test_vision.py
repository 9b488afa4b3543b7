"""Image and ECG architectures: shapes, vmap ensembles, pretrained ViT loading."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from torchvision.models import vision_transformer as tv_vit

from mia_audit.errors import DataError
from mia_audit.train.ecg import build_ecg_model, ecg_resnet1d
from mia_audit.train.vision import build_vision_model, load_state_dict_file, vit, wide_resnet


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("size", [32, 64])
def test_wrn_28_2_output_shape(size):
    torch.manual_seed(0)
    m = wide_resnet(28, 2, num_outputs=5).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, size, size)).shape == (2, 5)


def test_wrn_parameter_counts_match_the_paper():
    # Zagoruyko & Komodakis (2016), Table 1/CIFAR: WRN-28-2 ≈ 1.5M, WRN-40-4 ≈ 8.9M parameters
    assert abs(n_params(wide_resnet(28, 2, 10)) - 1.47e6) < 0.03e6
    assert abs(n_params(wide_resnet(40, 4, 10)) - 8.95e6) < 0.05e6


def test_wrn_grey_input_batchnorm_and_depth_validation():
    m = wide_resnet(10, 1, num_outputs=3, in_channels=1, norm="batch").eval()
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    with torch.no_grad():
        assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="6n"):
        wide_resnet(27, 2, 2)
    with pytest.raises(ValueError, match="norm"):
        wide_resnet(28, 2, 2, norm="layer")


def test_wrn_ensemble_under_vmap_matches_single_models():
    torch.manual_seed(1)
    models = [wide_resnet(28, 2, num_outputs=3).eval() for _ in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(3, 4, 3, 32, 32)  # each model gets its own batch

    def run(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    with torch.no_grad():
        out = vmap(run, randomness="different")(params, buffers, x)
        ref = torch.stack([m(xi) for m, xi in zip(models, x, strict=True)])
    assert out.shape == (3, 4, 3)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # the models really differ (otherwise the comparison above proves little)
    assert not torch.allclose(ref[0], ref[1])


def test_ecg_resnet1d_shapes_and_vmap():
    torch.manual_seed(2)
    m = ecg_resnet1d(num_outputs=5).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 12, 1000)).shape == (2, 5)
    small = [ecg_resnet1d(4, base_width=16, blocks=(1, 1)).eval() for _ in range(2)]
    params, buffers = stack_module_state(small)
    base = copy.deepcopy(small[0]).to("meta")
    x = torch.randn(2, 3, 12, 1000)
    with torch.no_grad():
        out = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))(params, buffers, x)
        ref = torch.stack([mm(xi) for mm, xi in zip(small, x, strict=True)])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    m2 = build_ecg_model({"arch": "xresnet1d", "base_width": 16, "blocks": [1, 1, 1]}, (8, 500), 2)
    with torch.no_grad():
        assert m2.eval()(torch.randn(1, 8, 500)).shape == (1, 2)
    with pytest.raises(ValueError, match="resnet1d"):
        build_ecg_model({"arch": "lstm"}, (12, 1000), 2)


def test_vit_b16_at_64px_forward_and_grey():
    torch.manual_seed(3)
    m = vit("vit-b-16", 64, num_outputs=4).eval()
    assert m.encoder.pos_embedding.shape == (1, (64 // 16) ** 2 + 1, 768)
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64)).shape == (2, 4)
        grey = vit("vit-b-16", 64, num_outputs=2, in_channels=1).eval()
        assert grey(torch.randn(2, 1, 64, 64)).shape == (2, 2)


def test_vit_l16_construction_parameter_count():
    m = vit("vit-l-16", 64, num_outputs=3)
    # torchvision documents 304,326,632 parameters for ViT-L/16 at 224 px with 1000 classes;
    # at 64 px the position embedding has 17 instead of 197 tokens and the head 3 outputs.
    expected = 304_326_632 - (197 - 17) * 1024 - (1024 * 1000 + 1000) + (1024 * 3 + 3)
    assert n_params(m) == expected


def test_vit_pretrained_round_trip_interpolates_positions(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(4)
    src = tv_vit.vit_b_16(weights=None)  # 224 px, 1000 classes, random init
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    path = tmp_path / "vit_b_16.safetensors"
    save_file(state, str(path))
    m = vit("vit-b-16", 64, num_outputs=2, weights_path=str(path))

    # independent computation: bicubic resize of the 14x14 grid to 4x4, class token kept
    pos = state["encoder.pos_embedding"]
    grid = pos[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
    small = F.interpolate(grid, size=4, mode="bicubic", align_corners=True)
    expected = torch.cat([pos[:, :1], small.permute(0, 2, 3, 1).reshape(1, 16, 768)], dim=1)
    torch.testing.assert_close(m.encoder.pos_embedding.detach(), expected)
    torch.testing.assert_close(m.conv_proj.weight.detach(), state["conv_proj.weight"])
    torch.testing.assert_close(
        m.encoder.layers[5].mlp[0].weight.detach(), state["encoder.layers.encoder_layer_5.mlp.0.weight"]
    )
    assert m.heads.head.weight.shape == (2, 768)  # old 1000-class head dropped
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_state_dict_pth_and_missing_file(tmp_path):
    sd = {"a": torch.arange(3.0)}
    torch.save(sd, tmp_path / "w.pth")
    torch.testing.assert_close(load_state_dict_file(tmp_path / "w.pth")["a"], sd["a"])
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(DataError) as err:
        vit("vit-b-16", 64, 2, weights_path=str(missing))
    assert str(missing) in str(err.value) and "model.pretrained" in str(err.value)


def test_build_vision_model_dispatch():
    m = build_vision_model({"arch": "wrn", "depth": 10, "widen": 1}, (1, 32, 32), 3)
    assert m.depth == 10 and m.widen == 1
    assert build_vision_model({"arch": "wrn-28-2"}, (3, 32, 32), 2).widen == 2
    assert build_vision_model({"arch": "vit-b-16"}, (3, 64, 64), 2).image_size == 64
    with pytest.raises(ValueError) as err:
        build_vision_model({"arch": "resnet50"}, (3, 32, 32), 2)
    for known in ("wrn-28-2", "wrn-40-4", "vit-b-16", "vit-l-16"):
        assert known in str(err.value)
    with pytest.raises(ValueError, match="widen"):
        build_vision_model({"arch": "wrn", "depth": 10}, (3, 32, 32), 2)
