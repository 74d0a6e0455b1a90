"""Feature extractors: layer names, truncation, shapes, pooling, normalisation, freezing, seeds, loading, fallback."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import vgg as tv_vgg

import make_golden as golden
from styletx import features as ft
from styletx.features import weights as wts
from styletx.errors import InputError, StyletxWarning, WeightsError
from styletx.features import build_extractor, layer_names, resolve_backbone
from styletx.features.extractor import FeatureExtractor, _mirrored
from styletx.features.random_net import BlurDown, ColourBank

STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT = ("relu4_2",)
VGG_CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu4_2": 512, "relu5_1": 512}


def _convs(extractor) -> list:
    return [m for m in extractor.modules() if isinstance(m, nn.Conv2d)]


# --------------------------------------------------------------------------------------------------- names


def test_vgg19_layer_names():
    names = layer_names("vgg19")
    assert len(names) == 16 * 2 + 5 == len(tv_vgg.make_layers(tv_vgg.cfgs["E"]))
    assert names[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert names[-3:] == ("conv5_4", "relu5_4", "pool5")
    assert names.index("relu4_2") < names.index("relu5_1")


def test_vgg16_layer_names():
    names = layer_names("vgg16")
    assert len(names) == 13 * 2 + 5 == len(tv_vgg.make_layers(tv_vgg.cfgs["D"]))
    assert "relu5_3" in names and "relu5_4" not in names and "relu3_4" not in names


def test_random_backbone_has_the_default_layers():
    names = layer_names("random")
    for layer in STYLE + CONTENT:
        assert layer in names
    with pytest.raises(InputError, match="resnet"):
        layer_names("resnet")


def test_unknown_layer_and_backbone_raise():
    with pytest.raises(InputError, match="relu9_9"):
        build_extractor("vgg19", ["relu9_9"], weights=None)
    with pytest.raises(InputError, match="alexnet"):
        build_extractor("alexnet", ["relu1_1"], weights=None)
    with pytest.raises(InputError, match="pooling"):
        build_extractor("vgg19", ["relu1_1"], weights=None, pooling="min")


# ----------------------------------------------------------------------------------------- truncation, shapes


@pytest.mark.parametrize("arch", ["vgg19", "vgg16"])
def test_truncated_after_deepest_layer(arch):
    ex = build_extractor(arch, ["relu2_1", "relu1_1"], weights=None)
    assert len(ex.nodes) == layer_names(arch).index("relu2_1") + 1 == 7
    assert len(_convs(ex)) == 3
    deep = build_extractor(arch, CONTENT + STYLE, weights=None)
    assert len(deep.nodes) == layer_names(arch).index("relu5_1") + 1


@pytest.mark.parametrize("arch", ["vgg19", "vgg16", "random"])
def test_forward_returns_exactly_the_requested_layers(arch):
    layers = ("relu4_2", "relu1_1", "relu3_1", "relu5_1")
    ex = build_extractor(arch, layers, weights=None)
    x = torch.rand(2, 3, 48, 64)
    out = ex(x)
    assert tuple(out) == layers == ex.layers
    for name, f in out.items():
        block = int(name[4])
        assert f.shape[0] == 2
        assert f.shape[2:] == (48 // 2 ** (block - 1), 64 // 2 ** (block - 1))
        if arch != "random":
            assert f.shape[1] == VGG_CHANNELS[name]
        assert f.dtype == torch.float32 and (f >= 0).all()  # relu outputs


def test_forward_stops_after_deepest_layer():
    ex = build_extractor("vgg19", ["relu1_1", "relu2_1"], weights=None)
    calls = []
    for m in ex.nodes:
        m.register_forward_hook(lambda mod, i, o: calls.append(mod))
    ex(torch.rand(1, 3, 16, 16))
    assert len(calls) == 7


def test_random_backbone_evaluates_only_what_is_needed():
    ex = build_extractor("random", ["relu2_1"])
    names = set(ex.node_names)
    assert "relu2_1" in names and not any(n.startswith(("relu3", "relu4", "relu5")) for n in names)
    calls = []
    for m in ex.nodes:
        m.register_forward_hook(lambda mod, i, o: calls.append(mod))
    ex(torch.rand(1, 3, 32, 32))
    assert len(calls) == len(ex.nodes)


def test_bad_input_shape_raises():
    ex = build_extractor("vgg19", ["relu1_1"], weights=None)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        ex(torch.rand(3, 16, 16))


# ------------------------------------------------------------------------------------- pooling, normalisation


def test_avg_pooling_replaces_max_pooling():
    mx = build_extractor("vgg19", ["relu3_1"], weights=None, pooling="max")
    av = build_extractor("vgg19", ["relu3_1"], weights=None, pooling="avg")
    assert sum(isinstance(m, nn.MaxPool2d) for m in mx.modules()) == 2
    assert sum(isinstance(m, nn.AvgPool2d) for m in av.modules()) == 2
    assert not any(isinstance(m, nn.MaxPool2d) for m in av.modules())
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(mx(x)["relu3_1"], av(x)["relu3_1"])
    assert av.description["pooling"] == "avg"
    rnd = build_extractor("random", ["relu3_1"], pooling="avg")
    assert not any(isinstance(m, nn.MaxPool2d) for m in rnd.modules())


def test_imagenet_normalisation_inside_forward():
    ex = build_extractor("vgg19", ["conv1_1"], weights=None)
    x = torch.rand(1, 3, 20, 24)
    conv = ex.nodes[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.conv2d((x - mean) / std, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(ex(x)["conv1_1"], expected)


def test_frozen_eval_and_gradients_reach_the_input():
    ex = build_extractor("vgg19", ["relu2_1"], weights=None)
    assert all(not p.requires_grad for p in ex.parameters())
    ex.train()
    assert not ex.training
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    ex(x)["relu2_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in ex.parameters())


def test_bf16_autocast_and_channels_last():
    for arch in ("vgg19", "random"):
        ex = build_extractor(arch, ["relu1_1", "relu3_1"], weights=None).to(memory_format=torch.channels_last)
        x = torch.rand(1, 3, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ex(x)
        assert out["relu3_1"].dtype == torch.bfloat16  # not converted back: the losses do that
        out["relu3_1"].float().pow(2).mean().backward()
        assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("arch", ["vgg19", "random"])
def test_seeded_random_weights(arch):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_extractor(arch, ["relu2_1"], weights=None, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is untouched
    b = build_extractor(arch, ["relu2_1"], weights=None, seed=5)
    c = build_extractor(arch, ["relu2_1"], weights=None, seed=6)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc) or pa.abs().sum() == 0  # biases are zero in both
    assert a.description["weights"] == "random seed 5"
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(a(x)["relu2_1"], b(x)["relu2_1"], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["vgg19", "random"])
def test_random_weights_do_not_depend_on_truncation(arch):
    short = build_extractor(arch, ["relu1_1"], weights=None)
    long = build_extractor(arch, ["relu1_1", "relu3_1"], weights=None)
    assert torch.equal(_convs(short)[0].weight, _convs(long)[0].weight)


def test_vgg_random_init_is_torchvisions():
    ex = build_extractor("vgg19", ["relu1_1"], weights=None)
    w = ex.nodes[0].weight
    assert torch.equal(ex.nodes[0].bias, torch.zeros(64))
    # kaiming normal, fan_out, relu: std = sqrt(2 / (64 * 9))
    assert abs(w.std().item() - (2 / (64 * 9)) ** 0.5) < 0.01


# ------------------------------------------------------------------------------------------ loading weights


def _torchvision_state_dict(cfg_prefix, seed=0) -> dict:
    """A torchvision-keyed ("features.i.weight") state dict for the first layers, from torchvision's builder."""
    torch.manual_seed(seed)
    feats = tv_vgg.make_layers(list(cfg_prefix))
    return {f"features.{k}": v for k, v in feats.state_dict().items()}


@pytest.fixture
def vgg19_file(tmp_path, monkeypatch):
    """A torchvision-style vgg19 file (first two blocks) in $STYLETX_WEIGHTS_DIR, trusted by the hash check."""
    sd = _torchvision_state_dict([64, 64, "M", 128, 128])
    folder = tmp_path / "weights_env"
    folder.mkdir()
    path = folder / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    entry = wts.WeightFile(path.name, "vgg19", wts.known_file("vgg19").url, digest, None)
    monkeypatch.setitem(wts._BY_ARCH, "vgg19", entry)
    monkeypatch.setitem(wts._BY_NAME, path.name, entry)
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(folder))
    return path, sd


def test_loads_torchvision_state_dict_found_by_the_lookup(vgg19_file):
    path, sd = vgg19_file
    ex = build_extractor("vgg19", ["relu1_2", "relu2_1"])  # weights="DEFAULT": the look-up
    assert ex.description["weights"] == str(path)
    convs = _convs(ex)
    for conv, idx in zip(convs, (0, 2, 5)):
        assert torch.equal(conv.weight, sd[f"features.{idx}.weight"])
        assert torch.equal(conv.bias, sd[f"features.{idx}.bias"])
    x = torch.rand(1, 3, 16, 16)
    reference = tv_vgg.make_layers([64, 64, "M", 128])
    reference.load_state_dict({k[len("features."):]: v for k, v in sd.items() if int(k.split(".")[1]) < 7})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(ex(x)["relu2_1"], reference((x - mean) / std))


def test_explicit_path_beats_the_lookup(vgg19_file, tmp_path):
    _, sd = vgg19_file
    other = {k: v + 1 for k, v in sd.items()}
    mine = tmp_path / "my_vgg.pth"
    torch.save(other, mine)
    ex = build_extractor("vgg19", ["relu1_1"], weights=mine)
    assert torch.equal(ex.nodes[0].weight, other["features.0.weight"])
    assert resolve_backbone("vgg19", str(mine)) == ("vgg19", mine)


def test_file_without_the_needed_layers_raises(vgg19_file):
    path, _ = vgg19_file
    with pytest.raises(WeightsError, match="features.10"):
        build_extractor("vgg19", ["relu3_1"])


def test_file_of_the_wrong_architecture_raises(tmp_path):
    path = tmp_path / "small.pth"
    torch.save({"features.0.weight": torch.zeros(32, 3, 3, 3), "features.0.bias": torch.zeros(32)}, path)
    with pytest.raises(WeightsError, match="shape"):
        build_extractor("vgg19", ["relu1_1"], weights=path)


def test_corrupt_weight_file_raises_naming_it(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="corrupt.pth"):
        build_extractor("vgg19", ["relu1_1"], weights=path)


# ---------------------------------------------------------------------------------------- resolve_backbone


def test_auto_falls_back_to_random_with_a_warning():
    with pytest.warns(StyletxWarning) as rec:
        assert resolve_backbone("auto", "DEFAULT") == ("random", None)
    msg = str(rec[0].message)
    assert "random" in msg and "vgg19-dcbb9e9d.pth" in msg and "https://download.pytorch.org" in msg
    assert "\n" not in msg


def test_auto_falls_back_fast_when_the_download_fails(monkeypatch):
    monkeypatch.delenv("STYLETX_OFFLINE")  # sockets are blocked by conftest: the download fails at once
    with pytest.warns(StyletxWarning):
        assert resolve_backbone("auto", "DEFAULT") == ("random", None)


def test_auto_uses_vgg19_when_found(vgg19_file):
    path, _ = vgg19_file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backbone("auto", "DEFAULT") == ("vgg19", path)


def test_explicit_backbone_never_falls_back():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(WeightsError) as info:
            resolve_backbone("vgg19", "DEFAULT")
        assert "vgg19-dcbb9e9d.pth" in str(info.value) and "dcbb9e9d" in str(info.value)
        with pytest.raises(WeightsError, match="vgg16-397923af.pth"):
            build_extractor("vgg16", ["relu1_1"])  # weights="DEFAULT" and nothing found offline
    assert resolve_backbone("random", None) == ("random", None)
    with pytest.raises(InputError, match="alexnet"):
        resolve_backbone("alexnet", None)


def test_auto_with_missing_explicit_path_raises(tmp_path):
    with pytest.raises(WeightsError, match="missing.pth"):
        resolve_backbone("auto", str(tmp_path / "missing.pth"))


# ------------------------------------------------------------------------------------------ weight-free backbone


def test_random_backbone_pyramid_downsampling_is_smooth_and_sized_like_pooling():
    ex = build_extractor("random", ["relu1_1", "relu4_2", "relu5_1"])
    blur = [m for m in ex.modules() if isinstance(m, BlurDown)]
    assert blur, "the default random backbone reads an image pyramid"
    flat = torch.full((1, 3, 9, 11), 0.7)
    torch.testing.assert_close(blur[0](flat), torch.full((1, 3, 4, 5), 0.7))  # a flat image stays flat
    out = ex(torch.rand(1, 3, 45, 61))
    assert out["relu1_1"].shape[2:] == (45, 61)
    assert out["relu4_2"].shape[2:] == (5, 7) and out["relu5_1"].shape[2:] == (2, 3)
    assert ex.description["backbone"] == "random" and "seed 0" in ex.description["weights"]


def test_random_backbone_filters_are_zero_mean():
    ex = build_extractor("random", ["relu2_1"])
    for conv in _convs(ex):
        assert conv.weight.mean(dim=(1, 2, 3)).abs().max() < 1e-6


def test_the_default_network_has_colour_detectors_in_its_first_stage_and_the_classic_one_none():
    default = ft.DEFAULT_RANDOM_CONFIG
    assert default.color_channels > 0 and default.color_stages == 1
    assert ft.CLASSIC_RANDOM_CONFIG.color_channels == 0
    ex = build_extractor("random", ["relu1_1", "relu2_1"])
    classic = build_extractor("random", ["relu1_1", "relu2_1"], random_config=ft.CLASSIC_RANDOM_CONFIG)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        out, old = ex(x), classic(x)
    assert out["relu1_1"].shape[1] == default.widths[0] + default.color_channels
    assert old["relu1_1"].shape[1] == default.widths[0] and out["relu2_1"].shape[1] == default.widths[1]
    banks = [m for m in ex.modules() if isinstance(m, ColourBank)]
    assert len(banks) == 1
    d, b = banks[0].colour.weight.flatten(1), banks[0].colour.bias
    assert torch.allclose(d.norm(dim=1), torch.ones(len(d))) and bool((b.abs() <= 2).all())
    # the detectors see brightness: a uniformly brighter image raises every detector that faces (1, 1, 1)
    with torch.no_grad():
        dark, light = (ex(torch.full((1, 3, 8, 8), v))["relu1_1"][:, default.widths[0]:] for v in (0.2, 0.8))
    std = torch.tensor([0.229, 0.224, 0.225])
    up = (d / std).sum(dim=1) > 0
    assert bool((light[0, up] >= dark[0, up]).all()) and bool((light[0, ~up] <= dark[0, ~up]).all())
    assert float((light - dark).abs().max()) > 0.1


def test_auto_does_not_hide_a_bad_file(monkeypatch, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "vgg19-dcbb9e9d.pth").write_bytes(b"not the real file")
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(folder))
    with pytest.raises(WeightsError, match="hash check"):
        resolve_backbone("auto", "DEFAULT")


def test_extractor_for_resolves_then_builds():
    with pytest.warns(StyletxWarning):
        ex = ft.extractor_for("auto", "DEFAULT", ["relu1_1", "relu4_2"], seed=2)
    assert ex.description["backbone"] == "random" and ex.description["weights"] == "random seed 2"
    assert ex.layers == ("relu1_1", "relu4_2")
    with pytest.raises(WeightsError):
        ft.extractor_for("vgg16", "DEFAULT", ["relu1_1"])


def test_weights_none_means_seeded_random_architecture():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backbone("auto", None) == ("vgg19", None)
        assert resolve_backbone("vgg16", "none") == ("vgg16", None)
        ex = ft.extractor_for("vgg19", None, ["relu1_1"], seed=4)
    assert ex.description == {"backbone": "vgg19", "weights": "random seed 4", "pooling": "max"}
    assert build_extractor("vgg16", ["relu1_1"], weights="none").description["weights"] == "random seed 0"


def test_random_backbone_variants_keep_the_interface():
    chain = ft.RandomNetConfig(feed="chain", widths=(8, 8, 8, 8, 8), content_width=8)
    for config in (ft.RandomNetConfig(content_detail=True), chain):
        ex = build_extractor("random", CONTENT + STYLE, random_config=config)
        out = ex(torch.rand(1, 3, 40, 48))
        assert tuple(out) == CONTENT + STYLE
        assert out["relu4_2"].shape[2:] == (5, 6) and out["relu1_1"].shape[2:] == (40, 48)
    with pytest.raises(ValueError, match="feed"):
        ft.RandomNetConfig(feed="tree")


@pytest.mark.parametrize("case", sorted(golden.CASES["features"]))
def test_seeded_backbone_features_match_the_stored_values(case):
    """Stored features (tests/golden/features.json, written by ``python tests/make_golden.py``) of the weight-free
    backbone (every default content and style layer) and of VGG19 with seeded random weights, on a seeded
    input: fails when a backbone's layers, its filters' initialisation or its seed handling change.
    atol 1e-4: fp32 on any CPU, only the kernels' summation order differs (measured <= 1.3e-6)."""
    golden.assert_matches(golden.compute("features", case), golden.load("features")[case], atol=1e-4, rtol=1e-5)


def test_context_keeps_every_layer_at_the_size_it_has_without_it():
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1", "pool2"]
    with_context = build_extractor("random", layers)
    no_context = dataclasses.replace(ft.DEFAULT_RANDOM_CONFIG, context=0)
    without = build_extractor("random", layers, random_config=no_context)
    assert with_context.context == 16 and without.context == 0
    for shape in [(1, 3, 171, 256), (1, 3, 16, 40), (2, 3, 97, 33)]:  # 16 px: too small to reflect 16 px
        x = torch.rand(*shape)
        with torch.no_grad():
            a, b = with_context(x), without(x)
        assert all(a[n].shape == b[n].shape for n in layers)


def _mirror_reference(x, m):
    """x with an m-px half-sample mirror border, built plainly (the row above the image is its first row, and so
    on outwards), gradient flowing back whole: what the extractor's context is checked against."""
    rows = torch.cat([x[..., :m, :].flip(-2), x, x[..., -m:, :].flip(-2)], -2)
    return torch.cat([rows[..., :m].flip(-1), rows, rows[..., -m:].flip(-1)], -1)


def test_context_sees_a_mirrored_border():
    ex = build_extractor("random", ["relu1_1"])
    x = torch.rand(1, 3, 40, 48)
    no_context = dataclasses.replace(ft.DEFAULT_RANDOM_CONFIG, context=0)
    plain = build_extractor("random", ["relu1_1"], random_config=no_context)
    mirrored = _mirror_reference(x, 16)
    with torch.no_grad():
        out = ex(x)["relu1_1"]
        assert torch.allclose(out, plain(mirrored)["relu1_1"][..., 16:-16, 16:-16], atol=1e-5)
        assert not torch.allclose(out[..., 0, :], plain(x)["relu1_1"][..., 0, :])  # not the zero-padded edge
        assert torch.allclose(out[..., 8:-8, 8:-8], plain(x)["relu1_1"][..., 8:-8, 8:-8], atol=1e-5)


def test_context_passes_gradient_back_through_the_mirror_tapered():
    x = torch.zeros(1, 1, 20, 60, requires_grad=True)
    _mirrored(x, 16).sum().backward()
    col = x.grad[0, 0, :, 30]  # 30 px from the sides: only the top and bottom copies reach it
    for j in range(20):
        top = 1 - j / 16 if j < 16 else 0.0  # the copy of row j sits j + 1 px above the image
        bottom = 1 - (19 - j) / 16 if 19 - j < 16 else 0.0
        assert col[j].item() == pytest.approx(1 + top + bottom)
    # an edge response of a 3x3 conv reads only the nearest copies, whose gradient is whole: the same gradient
    # as the conv on an explicitly mirrored image
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    ex = FeatureExtractor([("conv", conv, "input")], ["conv"], {}, context=16)
    img = torch.rand(1, 3, 40, 48, requires_grad=True)
    ex(img)["conv"][..., 0, 5:40].sum().backward()
    ref = img.detach().clone().requires_grad_(True)
    F.conv2d(_mirror_reference((ref - ex.mean) / ex.std, 1), conv.weight, conv.bias)[..., 0, 5:40].sum().backward()
    assert torch.allclose(img.grad, ref.grad, atol=1e-5)
    assert img.grad[..., 2:, :].abs().max() == 0 and img.grad[..., 1, :].abs().max() > 0  # the rows it reaches


def test_context_must_be_a_multiple_of_the_deepest_stride():
    with pytest.raises(ValueError, match="multiple of 16"):
        ft.RandomNetConfig(context=8)
