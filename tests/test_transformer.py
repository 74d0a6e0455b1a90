"""The feed-forward transformer: shapes, padding, the inference rewrites, checkpoints, pytorch/examples files."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import make_golden as golden
from conftest import make_image
from make_golden import not_identity
from styletx import metrics
from styletx.color import rgb_to_ycbcr
from styletx.errors import CheckpointError, InputError
from styletx.api import stylize_files
from styletx.engines.feedforward.model import load_transformer, new_transformer
from styletx.engines.feedforward.net import (
    ARCHITECTURES, ArchConfig, ResizeConvHead, TransformerNet, arch_config, block_mean, build_network, macs_per_pixel,
)
from styletx.engines.feedforward.rewrites import inference_network
from styletx.io.image import load_image
from styletx.tensors import from_pil, pad_to_multiple

TINY = golden.TINY


@pytest.fixture(autouse=True)
def _private_graph_cache(tmp_path_factory, monkeypatch):
    """Transformer.compile() caches ONNX graphs; keep the tests' out of the user's cache folder."""
    monkeypatch.setenv("STYLETX_CACHE_DIR", str(tmp_path_factory.mktemp("styletx-cache")))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("hw", [(37, 53), (64, 48), (5, 7), (1, 1)])
def test_any_size_comes_back_the_same_size(arch, hw):
    tf = new_transformer(arch, seed=0, device="cpu", precision="fp32")
    x = torch.rand(2, 3, *hw)
    y = tf.stylize(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert tf.stylize(x[0]).shape == x[0].shape  # (3, H, W) in, (3, H, W) out


def test_padding_only_adds_bottom_right_so_nothing_shifts():
    x = torch.rand(1, 3, 37, 53)
    padded, (ph, pw) = pad_to_multiple(x, 4, 16)
    assert padded.shape[-2:] == (40, 56) and (ph, pw) == (3, 3)
    assert torch.equal(padded[..., :37, :53], x)
    # an input already a multiple of 4 goes straight through the body
    net = build_network("standard", seed=0, **TINY).eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(net(x), net.body(x))


def test_pil_in_pil_out_and_list_of_sizes():
    tf = new_transformer("slim", seed=1, device="cpu")
    img = make_image(30, 22, seed=3)
    out = tf.stylize(img)
    assert isinstance(out, Image.Image) and out.size == (30, 22) and out.mode == "RGB"
    outs = tf.stylize([img, torch.rand(3, 17, 19)])
    assert outs[0].size == (30, 22) and outs[1].shape == (3, 17, 19)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_subpixel_rewrite_is_exact(arch):
    net = not_identity(build_network(arch, seed=3)).eval()
    fast = inference_network(net)
    x = torch.rand(2, 3, 41, 29, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
        # fp32, only the summation order differs: 1e-5 of the output's scale (standard's reaches 7.5, where an
        # AMD EPYC differed by 1.1e-5 on 2026-12-03)
        assert torch.allclose(ref, fast(x), atol=1e-5 * max(1.0, float(ref.abs().max())), rtol=0)


def test_batching_and_compile_prepare_do_not_change_the_output():
    tf = new_transformer("standard", seed=0, device="cpu", precision="fp32", **TINY)
    x = torch.rand(5, 3, 24, 20)
    whole = tf.stylize(x, batch_size=5)
    assert torch.allclose(tf.stylize(x, batch_size=2), whole, atol=1e-6)
    tf.compile(backend="torch")
    assert torch.allclose(tf.stylize(x), whole, atol=1e-6)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    tf = new_transformer("slim", seed=0, device="cpu", precision="fp32")
    not_identity(tf.net)
    x = torch.rand(1, 3, 64, 64)
    eager = tf.stylize(x)
    tf.compile(backend="torch.compile")
    assert tf.backend == "torch.compile"
    assert torch.allclose(tf.stylize(x), eager, atol=1e-4)


def test_size_and_content_scale():
    tf = new_transformer("slim", seed=0, device="cpu")
    x = torch.rand(1, 3, 40, 60)
    assert tf.stylize(x, size=30).shape[-2:] == (20, 30)
    assert tf.stylize(x, content_scale=0.5).shape[-2:] == (20, 30)


def test_colour_preservation_on_a_network_that_changes_colours():
    """slim starts as the identity, where "keeps the content's chroma" would hold whatever preserve_color did:
    with a random last conv the network recolours the picture, and preserve_color must undo exactly that."""
    tf = new_transformer("slim", seed=0, device="cpu", precision="fp32")
    not_identity(tf.net)
    x = from_pil(make_image(60, 40, seed=3))
    plain = tf.stylize(x)
    chroma_x, ycc_plain = rgb_to_ycbcr(x)[:, 1:], rgb_to_ycbcr(plain)
    assert (ycc_plain[:, 1:] - chroma_x).abs().mean() > 0.1  # measured 0.17: the colours really changed

    y = tf.stylize(x, preserve_color="luminance")
    ycc_y = rgb_to_ycbcr(y)
    # the content's chroma and the stylised luminance, wherever the clamp to [0, 1] did not bite
    inside = ((y > 1e-4) & (y < 1 - 1e-4)).all(dim=1)
    assert inside.float().mean() > 0.5
    assert (ycc_y[:, 1:] - chroma_x).abs().permute(1, 0, 2, 3)[:, inside].max() < 1e-4
    assert (ycc_y[:, 0] - ycc_plain[:, 0]).abs()[inside].max() < 1e-4
    assert not torch.allclose(y, x, atol=0.05)  # the luminance is the network's, not the input's

    hist = tf.stylize(x, preserve_color="histogram")
    assert hist.shape == x.shape
    # the output's colour distribution is matched to the content's (measured 0.03 against 0.13 without)
    assert metrics.color_distance(hist, x) < 0.5 * metrics.color_distance(plain, x)
    with pytest.raises(InputError, match="preserve_color"):
        tf.stylize(x, preserve_color="sepia")


@pytest.mark.parametrize("case", sorted(golden.CASES["transformer"]))
def test_seeded_tiny_network_matches_its_stored_output(case):
    """Stored expected output (tests/golden/transformer.json, written by ``python tests/make_golden.py``) of a
    seeded tiny network on a seeded input: fails when an architecture, the initialisation or a layer changes.
    atol 1e-4: fp32 on any CPU, only the kernels' summation order differs (measured <= 2e-6 across oneDNN ISAs)."""
    stored = golden.load("transformer")
    assert set(stored) == set(ARCHITECTURES) == set(golden.CASES["transformer"])
    golden.assert_matches(golden.compute("transformer", case), stored[case], atol=1e-4)


def test_model_runs_the_network_it_was_built_with():
    """The inference path (padding, fp32 eager backend, clamp) gives the network's own output, clamped."""
    tf = new_transformer("standard", seed=0, device="cpu", precision="fp32", **TINY)
    x = golden.seeded_input(1, 1, 3, 21, 27)
    reference = build_network("standard", seed=0, **TINY).eval()
    with torch.no_grad():
        expected = reference(x).clamp(0, 1)
    assert tf.stylize(x).sub(expected).abs().max() < 1e-5
    assert tf.describe()["precision"] == "fp32"


def test_checkpoint_round_trip_rebuilds_the_architecture(tmp_path):
    tf = new_transformer("slim", seed=5, device="cpu", precision="fp32")
    not_identity(tf.net)
    path = tf.save(tmp_path / "m.pth", style={"name": "s.png", "sha256": "ab" * 32}, losses={"total": 1.5})
    back = load_transformer(path, device="cpu", precision="fp32")
    assert back.arch == "slim" and back.config == tf.config
    assert back.meta["style"]["name"] == "s.png" and back.meta["losses"] == {"total": 1.5}
    assert back.meta["styletx_version"]
    x = torch.rand(1, 3, 33, 35)
    assert torch.equal(back.stylize(x), tf.stylize(x))
    with pytest.raises(InputError, match="exists"):
        tf.save(path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_bad_checkpoints_name_the_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_transformer(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_transformer(tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_transformer(other)


def _pytorch_examples_state(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """A state_dict in pytorch/examples' fast_neural_style layout, as an old PyTorch saved it."""
    net = TransformerNet(arch_config("standard"))
    torch.manual_seed(seed)
    state = OrderedDict()
    for k, v in net.state_dict().items():
        state[k] = torch.randn_like(v) * 0.05 if k.endswith("weight") and v.dim() == 4 else v + 0.01 * torch.randn_like(v)
    for k in [k for k in state if k.endswith("in1.weight") or k.endswith("in2.weight") or k.split(".")[0].startswith("in")]:
        prefix = k.rsplit(".", 1)[0]
        state.setdefault(prefix + ".running_mean", torch.zeros(state[k].shape[0]))
        state.setdefault(prefix + ".running_var", torch.ones(state[k].shape[0]))
    return state


def test_pytorch_examples_checkpoint_loads_and_is_wrapped_to_unit_range(tmp_path):
    state = _pytorch_examples_state()
    assert "conv1.conv2d.weight" in state and "res1.conv1.conv2d.weight" in state
    assert "deconv1.conv2d.weight" in state and "in1.running_mean" in state
    path = tmp_path / "mosaic.pth"
    torch.save(state, path)
    tf = load_transformer(path, device="cpu", precision="fp32")
    assert tf.config.value_range == 255.0 and tf.arch == "standard"
    assert tf.meta["format"] == "pytorch-examples" and tf.meta["style"]["name"] == "mosaic"
    # reference: their network on 0..255 pixels, then divided back
    ref_net = TransformerNet(arch_config("standard"))
    ref_net.load_state_dict({k: v for k, v in state.items() if "running" not in k})
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        expected = (ref_net.body(x * 255.0) / 255.0).clamp(0, 1)
    assert torch.allclose(tf.stylize(x), expected, atol=1e-4)


def test_slim_is_much_cheaper_per_pixel():
    assert macs_per_pixel("standard") > 25 * macs_per_pixel("slim")


def test_stylize_files_writes_with_metadata_and_never_clobbers(tmp_path):
    from styletx.io.image import read_metadata

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    make_image(30, 20, seed=1).save(folder / "a.png")
    make_image(21, 17, seed=2).save(folder / "sub" / "b.jpg")
    out = tmp_path / "out"
    out.mkdir()
    tf = new_transformer("slim", seed=0, device="cpu", precision="fp32")
    not_identity(tf.net)
    model = tf.save(tmp_path / "m.pth")
    seen = []
    paths = stylize_files(model, [folder], out, callback=seen.append)
    assert [p.name for p in paths] == ["a_stylized.png", "b_stylized.png"]
    assert Image.open(paths[1]).size == (21, 17)
    for src, written in zip([folder / "a.png", folder / "sub" / "b.jpg"], paths):
        x, got = load_image(src).tensor, load_image(written).tensor
        assert (got - tf.stylize(x)).abs().max() <= 1 / 255 + 1e-6  # the model's output, in 8 bits
        assert (got - x).abs().mean() > 0.05  # ... which is not the input
    assert [(s.step, s.total) for s in seen] == [(1, 2), (2, 2)]
    meta = read_metadata(paths[0])
    assert "slim" in meta["styletx.model"] and meta["styletx.engine"] == "feedforward"
    with pytest.raises(InputError, match="exists"):
        stylize_files(model, [folder], out)
    single = stylize_files(model, [folder / "a.png"], tmp_path / "one.jpg")
    assert single == [tmp_path / "one.jpg"] and single[0].exists()


def test_api_stylize_with_model(tmp_path, content_image):
    import styletx.api as api

    tf = new_transformer("slim", seed=0, device="cpu", precision="fp32")
    not_identity(tf.net)
    model = tf.save(tmp_path / "m.pth")
    result = api.stylize(content_image, model=model, output="tensor")
    x = load_image(content_image).tensor
    assert result.image.shape == x.shape == (1, 3, content_image.size[1], content_image.size[0])
    assert (result.image - tf.stylize(x)).abs().max() < 1e-5  # the saved model was run ...
    assert (result.image - x).abs().mean() > 0.05  # ... and it is not the identity
    assert result.metadata["styletx.engine"] == "feedforward"
    with pytest.raises(InputError, match="iterations"):
        api.stylize(content_image, model=model, iterations=5)


# ------------------------------------------------------------------- fast inference paths (compile backends)


def test_pixel_shuffles_as_convs_are_exact():
    import torch.nn.functional as F

    from styletx.engines.feedforward.rewrites import DepthToSpaceConv, SpaceToDepthConv

    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(SpaceToDepthConv(3, 4)(x), F.pixel_unshuffle(x, 4))
    y = torch.randn(2, 48, 5, 7)
    assert torch.equal(DepthToSpaceConv(3, 4)(y), F.pixel_shuffle(y, 4))


def test_sub_pixel_upsample_convs_equal_the_upsample_conv():
    """Both exact forms of nearest 2x + reflect pad + 3x3 conv: four 2x2 convs (eager) and one 3x3 conv to 4 x Cout
    channels + pixel shuffle (the final stage in the ONNX Runtime graph)."""
    from styletx.engines.feedforward.net import UpsampleConvLayer
    from styletx.engines.feedforward.rewrites import SubPixelUpsampleConv, SubPixelUpsampleConv3

    torch.manual_seed(0)
    layer = UpsampleConvLayer(16, 4, 3)
    x = torch.randn(2, 16, 9, 14)
    with torch.no_grad():
        ref = layer(x)
        assert ref.shape == (2, 4, 18, 28)
        for fast in (SubPixelUpsampleConv(layer), SubPixelUpsampleConv3(layer)):
            assert float((fast(x) - ref).abs().max()) < 1e-5
    assert SubPixelUpsampleConv3(layer).conv2d.weight.shape == (16, 16, 3, 3)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_onnxruntime_backend_matches_eager_at_any_size(arch, tmp_path):
    tf = new_transformer(arch, seed=0, device="cpu", precision="fp32", res_blocks=1)
    not_identity(tf.net)
    xs = [torch.rand(2, 3, 37, 53), torch.rand(1, 3, 5, 7), torch.rand(1, 3, 64, 48)]
    eager = [tf.stylize(x) for x in xs]
    assert tf.compile(backend="onnxruntime", cache_dir=tmp_path) is tf and tf.backend == "onnxruntime"
    assert tf.describe()["backend"] == "onnxruntime"
    for x, e in zip(xs, eager):
        y = tf.stylize(x)
        assert y.shape == x.shape and y.dtype == torch.float32
        assert float((y - e).abs().max()) < 1e-4  # fp32 both; summation order only
    img = make_image(30, 22, seed=3)
    assert tf.stylize(img).size == (30, 22)


def test_onnx_graph_is_cached_by_weights(tmp_path):
    a = new_transformer("standard", seed=0, device="cpu", precision="fp32", **TINY).compile(
        backend="onnxruntime", cache_dir=tmp_path)
    b = new_transformer("standard", seed=0, device="cpu", precision="fp32", **TINY).compile(
        backend="onnxruntime", cache_dir=tmp_path)
    graphs = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert len(graphs) == 1 and a.backend_choice.run.path == b.backend_choice.run.path == graphs[0]
    stamp = graphs[0].stat().st_mtime_ns
    a.compile(backend="onnxruntime", cache_dir=tmp_path)  # compile() again: the graph is reused, not re-exported
    assert graphs[0].stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")]  # no temporary files
    c = new_transformer("standard", seed=1, device="cpu", precision="fp32", **TINY).compile(
        backend="onnxruntime", cache_dir=tmp_path)
    assert c.backend_choice.run.path != a.backend_choice.run.path  # other weights, other graph
    x = torch.rand(1, 3, 24, 20)
    assert not torch.allclose(a.stylize(x), c.stylize(x))
    a.to("cpu")  # moving drops the prepared backend
    assert a.backend == "torch"


def test_slim_pads_small_inputs_to_its_minimum_size():
    net = build_network("slim", seed=0)
    assert net.multiple == 16 and net.min_size == 32
    with torch.no_grad():
        y = net(torch.rand(1, 3, 3, 40))
    assert y.shape == (1, 3, 3, 40)


def test_slim_starts_as_the_identity_and_old_slim_checkpoints_load_without_the_skip(tmp_path):
    tf = new_transformer("slim", seed=0, device="cpu", precision="fp32")
    assert tf.config.input_skip and not ARCHITECTURES["standard"].input_skip
    x = torch.rand(1, 3, 40, 36)
    assert torch.allclose(tf.stylize(x), x, atol=1e-6)  # untrained: output = input
    # a checkpoint written before the field existed (no "input_skip" in its arch) rebuilds a network without it
    not_identity(tf.net)
    ckpt = tf.checkpoint()
    ckpt["arch"] = {k: v for k, v in ckpt["arch"].items() if k != "input_skip"}
    torch.save(ckpt, tmp_path / "old.pth")
    old = load_transformer(tmp_path / "old.pth", device="cpu", precision="fp32")
    assert not old.config.input_skip
    with torch.no_grad():
        plain = old.net(x)
        assert torch.allclose(tf.net(x) - x, plain, atol=1e-5)  # same layers, minus the skip


# ------------------------------------------------------------------------------------- the resize head (issue 9)


@pytest.mark.parametrize("r", [2, 4])
def test_resize_head_is_a_bilinear_resize_then_a_full_resolution_conv(r):
    """The folded low-resolution conv + pixel shuffle equals resizing the (reflection-padded) input bilinearly
    and convolving at full resolution with the layer's own kernel; a flat input gives a flat output."""
    torch.manual_seed(0)
    head = ResizeConvHead(5, 3, r)
    k = head.conv2d.kernel_size[0]
    assert k == 2 * (r // 2) + 1
    x = torch.randn(2, 5, 7, 9)
    with torch.no_grad():
        y = F.pixel_shuffle(head(x), r)
        up = F.interpolate(F.pad(x, (1, 1, 1, 1), mode="reflect"), scale_factor=r, mode="bilinear",
                           align_corners=False)
        h = k // 2
        expected = F.conv2d(up[..., r - h : r + 7 * r + h, r - h : r + 9 * r + h], head.conv2d.weight, head.conv2d.bias)
        assert y.shape == expected.shape == (2, 3, 7 * r, 9 * r)
        assert (y - expected).abs().max() < 1e-5
        flat = F.pixel_shuffle(head(torch.full((1, 5, 6, 6), 0.7)), r)
        assert (flat.amax(dim=(-2, -1)) - flat.amin(dim=(-2, -1))).abs().max() < 1e-5
        # the plain shuffle head with free weights makes a pattern of period r out of the same flat input
        free = torch.nn.Conv2d(5, 3 * r * r, 3)
        plaid = F.pixel_shuffle(free(torch.full((1, 5, 8, 8), 0.7)), r)
        assert (plaid.amax(dim=(-2, -1)) - plaid.amin(dim=(-2, -1))).min() > 1e-2


@pytest.mark.parametrize("tiny", [False, True])
def test_slim_resize_leaves_no_grid_where_the_shuffle_head_does(tiny):
    """Same layers, random last conv, a picture in: the change the shuffle head adds is a strong 4-px grid
    (measured 0.30-0.34), the resize heads' have none to speak of (slim-resize 4e-5-6e-5; slim-2x 0.001-0.0025, from
    the nearest 2x upsample of its final stage, as in standard's upsample stages; trained, its held-out pictures
    score the inputs' own 0.0010: docs/benchmarks.md)."""
    x = load_image(make_image(96, 96, seed=3, kind="scene")).tensor
    scores = {}
    for arch in ("slim", "slim-resize", "slim-2x"):
        net = not_identity(build_network(arch, seed=0, **(TINY if tiny else {}))).eval()
        with torch.no_grad():
            change = net(x) - x
        scores[arch] = metrics.grid_score((0.5 + 0.1 * change).clamp(0, 1))
    assert scores["slim"] > 0.1
    assert scores["slim-resize"] < 0.01 and scores["slim-2x"] < 0.01


def _saved_without(arch, field: str, tmp_path):
    """A seeded ``arch`` model and the same checkpoint loaded back with ``field`` removed from its architecture,
    as checkpoints written before the field existed are."""
    old = new_transformer(arch, seed=3, device="cpu", precision="fp32")
    not_identity(old.net)
    ckpt = old.checkpoint()
    ckpt["arch"] = {k: v for k, v in ckpt["arch"].items() if k != field}
    torch.save(ckpt, tmp_path / "old.pth")
    return old, load_transformer(tmp_path / "old.pth", device="cpu", precision="fp32")


def test_resize_head_checkpoints_round_trip_and_old_ones_keep_the_shuffle_head(tmp_path):
    tf = new_transformer("slim-resize", seed=2, device="cpu", precision="fp32")
    assert tf.config.head == "resize" and tf.net.deconv3.conv2d.weight.shape == (3, 16, 5, 5)
    not_identity(tf.net)
    path = tf.save(tmp_path / "r.pth", style={"name": "s.png", "sha256": "cd" * 32})
    back = load_transformer(path, device="cpu", precision="fp32")
    assert back.config == tf.config
    x = torch.rand(1, 3, 37, 41)
    assert torch.equal(back.stylize(x), tf.stylize(x))
    # the inference path folds the head once into a plain conv: the same numbers as the training form
    with torch.no_grad():
        assert (inference_network(tf.net)(x) - tf.net(x)).abs().max() < 1e-5
    # a checkpoint written before the field existed rebuilds the shuffle head it was trained with
    old, loaded = _saved_without("slim", "head", tmp_path)
    assert loaded.config.head == "shuffle" and loaded.net.deconv3.conv2d.weight.shape == (48, 16, 3, 3)
    assert loaded.config == ARCHITECTURES["slim"]
    assert torch.equal(loaded.stylize(x), old.stylize(x))


def test_resize_head_options_are_checked():
    with pytest.raises(InputError, match="head"):
        arch_config("slim", head="transposed")
    with pytest.raises(InputError, match="unshuffle"):
        arch_config("standard", head="resize")
    with pytest.raises(InputError, match="kernel_out"):
        arch_config("slim", head="resize", kernel_out=5)
    assert macs_per_pixel(arch_config("slim", head="resize")) == macs_per_pixel(arch_config("slim", head="shuffle"))


# ------------------------------------------------------------------ the final 2x stage (issue 9, arch slim-2x)


def test_slim_2x_has_a_half_resolution_stage_and_a_2x_resize_head():
    net = build_network("slim-2x", seed=0)
    cfg = net.config
    assert cfg.final_stage == 4 and cfg.skip_norm and cfg.head == "resize" and cfg.head_scale == 2 == net.head_scale
    assert net.stage2x.conv2d.weight.shape == (4, 16, 3, 3) and cfg.final_norm and net.in6.weight.shape == (4,)
    assert isinstance(net.deconv3, ResizeConvHead) and net.deconv3.r == 2
    # a 3x3 conv at full resolution, folded at 1/2, of the stage's 4 channels and the input averaged to 1/2
    assert net.deconv3.conv2d.weight.shape == (3, 4 + 3, 3, 3) and cfg.skip_into_head and not net.input_skip
    assert net.multiple == 16 and net.min_size == 32  # the padding is the stem's, as for slim
    # it starts from the photo, normalised, at half its colour, the feature taps at zero (the untrained network: below)
    assert cfg.skip_gain == 1.0 and cfg.skip_chroma == 0.5 and cfg.head_zero_init
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        plain = build_network("slim-2x", seed=0, skip_into_head=False, skip_norm=False, skip_chroma=1.0,
                              head_zero_init=True)  # skip at full res
        assert torch.allclose(plain(x), x, atol=1e-6) and plain.deconv3.conv2d.weight.shape == (3, 4, 3, 3)
        feats = {}
        net.stage2x.register_forward_hook(lambda _m, _i, out: feats.setdefault("stage2x", out))
        net.deconv3.register_forward_hook(lambda _m, _i, out: feats.setdefault("head", out))
        net(torch.rand(1, 3, 64, 48))
    assert feats["stage2x"].shape == (1, 4, 32, 24)  # half resolution
    assert feats["head"].shape == (1, 12, 32, 24)  # 3 * 2^2 phases at 1/2, then the 2x pixel shuffle
    # fewer multiply-adds than slim (the 2x head at 1/2 costs less than the 4x one at 1/4), more with 8 channels
    assert 0.85 * macs_per_pixel("slim") < macs_per_pixel("slim-2x") < macs_per_pixel("slim")
    assert macs_per_pixel("slim") < macs_per_pixel(arch_config("slim-2x", final_stage=8)) < 1.1 * macs_per_pixel("slim")
    # final_norm=False: conv + ReLU only at 1/2, no in6
    bare = build_network("slim-2x", seed=0, final_norm=False)
    assert not hasattr(bare, "in6") and not any(k.startswith("in6.") for k in bare.state_dict())
    with torch.no_grad():
        y = not_identity(bare).eval()(x)
    assert y.shape == x.shape and float((y - x).abs().mean()) > 1e-3


def test_a_flat_input_gives_a_flat_output_only_without_a_shuffle_head():
    """A constant picture keeps every feature map constant up to the head (each instance norm turns it into its
    shift, given random values here so the features are not all zero): the resize heads turn it into a constant
    output, slim's free per-phase weights into a 4-px pattern."""
    flat = torch.full((1, 3, 48, 64), 0.3)
    spread = {}
    for arch in ("slim", "slim-resize", "slim-2x"):
        net = not_identity(build_network(arch, seed=1)).eval()
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.InstanceNorm2d):
                    m.bias.copy_(torch.rand(m.bias.shape, generator=gen))
            y = net(flat)
        spread[arch] = float((y.amax(dim=(-2, -1)) - y.amin(dim=(-2, -1))).max())
    assert spread["slim"] > 1e-2
    assert spread["slim-resize"] < 1e-5 and spread["slim-2x"] < 1e-5


def test_slim_2x_checkpoints_round_trip_and_old_ones_load_without_the_final_stage(tmp_path):
    tf = new_transformer("slim-2x", seed=4, device="cpu", precision="fp32")
    not_identity(tf.net)
    path = tf.save(tmp_path / "f.pth")
    back = load_transformer(path, device="cpu", precision="fp32")
    assert back.config == tf.config == ARCHITECTURES["slim-2x"] and back.arch == "slim-2x"
    x = torch.rand(1, 3, 37, 41)
    assert torch.equal(back.stylize(x), tf.stylize(x))
    assert (tf.stylize(x) - x).abs().mean() > 0.01  # a real change went through the round trip
    with torch.no_grad():
        assert (inference_network(tf.net)(x) - tf.net(x)).abs().max() < 1e-5  # the sub-pixel + folded form
    # a checkpoint written before the field existed (every slim-resize one) rebuilds the network it was trained as
    old, loaded = _saved_without("slim-resize", "final_stage", tmp_path)
    assert loaded.config == ARCHITECTURES["slim-resize"] and loaded.config.final_stage == 0
    assert not hasattr(loaded.net, "stage2x") and loaded.net.head_scale == 4
    assert torch.equal(loaded.stylize(x), old.stylize(x))
    # a slim-2x checkpoint whose arch lost the field does not silently load into the wrong layers, nor one
    # without the norm whose arch lost final_norm
    bare = new_transformer(arch_config("slim-2x", final_norm=False), seed=6, device="cpu", precision="fp32")
    for model, field in ((tf, "final_stage"), (bare, "final_norm"), (tf, "skip_into_head")):
        ckpt = model.checkpoint()
        ckpt["arch"] = {k: v for k, v in ckpt["arch"].items() if k != field}
        torch.save(ckpt, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError):
            load_transformer(tmp_path / "bad.pth", device="cpu", precision="fp32")
    # a checkpoint written before final_norm existed (the first slim-2x: 8 channels, instance norm) rebuilds it
    first, loaded = _saved_without(arch_config("slim-2x", final_stage=8, final_norm=True, skip_into_head=False,
                                               skip_norm=False, skip_chroma=1.0),
                                   "final_norm", tmp_path)
    assert loaded.config.final_norm and loaded.config.final_stage == 8 and hasattr(loaded.net, "in6")
    assert torch.equal(loaded.stylize(x), first.stylize(x))
    # one written before skip_into_head existed (the third attempt's slim-2x) rebuilds its full-resolution skip
    third, loaded = _saved_without(arch_config("slim-2x", skip_into_head=False, skip_norm=False, skip_chroma=1.0),
                                   "skip_into_head", tmp_path)
    assert not loaded.config.skip_into_head and loaded.net.input_skip
    assert torch.equal(loaded.stylize(x), third.stylize(x))
    for bad in ({"input_skip": False}, {"head": "shuffle"}):
        with pytest.raises(InputError, match="skip_into_head"):
            arch_config("slim-2x", **bad)


def test_skip_gain_starts_the_network_from_a_lower_contrast_photo(tmp_path):
    """skip_gain g, the head's feature taps at zero: the untrained slim-2x returns g * (the input averaged over 2x2,
    resized back up) + (1 - g) / 2, i.e. the photo's contrast scaled by g around mid-grey (inside the 1-px border
    where the head's reflection pad and the resize's clamp differ); a checkpoint keeps its trained weights
    whatever the field says, and one written before the field existed loads unchanged."""
    x = torch.rand(1, 3, 40, 36)
    back = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    with torch.no_grad():
        for gain in (1.0, 0.5, 0.0):
            y = build_network("slim-2x", seed=0, skip_gain=gain, skip_chroma=1.0, head_zero_init=True,
                              skip_norm=False)(x)
            assert torch.allclose(y[..., 1:-1, 1:-1], gain * back[..., 1:-1, 1:-1] + (1 - gain) / 2, atol=1e-6)
    for bad in (-0.1, 1.5, True, "0.5", None):
        with pytest.raises(InputError, match="skip_gain"):
            arch_config("slim-2x", skip_gain=bad)
    with pytest.raises(InputError, match="skip_gain: needs skip_into_head"):
        arch_config("slim", skip_gain=0.5)
    for field, value in (("skip_gain", 0.25), ("head_zero_init", False)):
        old, loaded = _saved_without(arch_config("slim-2x", **{field: value}), field, tmp_path)
        assert getattr(loaded.config, field) == getattr(ArchConfig(), field)  # only the initialisation ...
        assert torch.equal(loaded.stylize(x), old.stylize(x))  # ... not the trained weights


def test_block_mean_is_the_average_pool():
    """The skip into the head is averaged by strided slices (faster than avg_pool2d on CPUs): the same values."""
    for r in (1, 2, 4):
        x = torch.rand(2, 3, 8 * r, 4 * r)
        assert torch.allclose(block_mean(x, r), F.avg_pool2d(x, r), atol=1e-6)
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0, 1] = 4.0  # one 2x2 block holds a 4: its mean is 1, the others' 0
    assert torch.equal(block_mean(x, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))


def test_skip_chroma_starts_the_network_from_a_desaturated_photo(tmp_path):
    """skip_chroma c: output channel k's skip taps start as gain * (c * input k + (1 - c) * the BT.601 luminance),
    so the untrained slim-2x with the feature taps at zero returns that mix of the input averaged over 2x2 and
    resized back up (inside the 1-px border; c = 0: the photo in grey); a trained checkpoint keeps its weights."""
    x = torch.rand(1, 3, 40, 36)
    back = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    luma = (0.299 * back[:, 0] + 0.587 * back[:, 1] + 0.114 * back[:, 2])[:, None]
    with torch.no_grad():
        for gain, chroma in ((1.0, 0.0), (0.5, 0.0), (1.0, 0.25), (0.75, 1.0)):
            net = build_network("slim-2x", seed=0, skip_chroma=chroma, skip_gain=gain, head_zero_init=True,
                                skip_norm=False)
            want = gain * (chroma * back + (1 - chroma) * luma) + (1 - gain) / 2
            assert torch.allclose(net(x)[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], atol=1e-6)
        grey = build_network("slim-2x", seed=0, skip_chroma=0.0, head_zero_init=True, skip_norm=False)(x)
        assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
        # random texture over the grey photo
        rand = build_network("slim-2x", seed=0, skip_chroma=0.0, skip_norm=False, head_zero_init=False)
        assert float((rand(x) - luma).abs().mean()) > 1e-3
    for bad in (-0.1, 1.5, True, "0", None):
        with pytest.raises(InputError, match="skip_chroma"):
            arch_config("slim-2x", skip_chroma=bad)
    with pytest.raises(InputError, match="skip_chroma: needs skip_into_head"):
        arch_config("slim-resize", skip_chroma=0.0)
    old, loaded = _saved_without(arch_config("slim-2x", skip_chroma=0.0), "skip_chroma", tmp_path)
    assert loaded.config.skip_chroma == 1.0 and torch.equal(loaded.stylize(x), old.stylize(x))


def test_color_path_starts_at_zero_and_sets_the_skips_colour(tmp_path):
    """color_path: a 1x1 conv from deconv2's features, resized bilinearly to the head's resolution and added to the
    skip's channels. Zero at the start (the network is slim-2x's at the same seed); an offset in its bias moves the
    untrained network's output by that offset through the skip's identity taps; training reaches its weights."""
    x = torch.rand(1, 3, 40, 36)
    plain = build_network("slim-2x", seed=0, skip_chroma=1.0, head_zero_init=True, skip_norm=False)
    net = build_network("slim-2x", seed=0, skip_chroma=1.0, head_zero_init=True, color_path=True, skip_norm=False)
    assert net.color1x1.weight.shape == (3, 16, 1, 1)
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))
        net.color1x1.bias.copy_(torch.tensor([0.1, 0.0, -0.05]))
        shift = (net(x) - plain(x)).mean(dim=(0, 2, 3))
    assert torch.allclose(shift, torch.tensor([0.1, 0.0, -0.05]), atol=1e-5)
    trained = build_network("slim-2x", seed=0, color_path=True)
    trained(x).square().mean().backward()
    assert float(trained.color1x1.weight.grad.abs().max()) > 0
    assert macs_per_pixel(arch_config("slim-2x", color_path=True)) - macs_per_pixel("slim-2x") == 16 * 3 / 16
    for bad in (1, "true", None):
        with pytest.raises(InputError, match="color_path"):
            arch_config("slim-2x", color_path=bad)
    with pytest.raises(InputError, match="color_path: needs skip_into_head"):
        arch_config("slim-resize", color_path=True)
    old, loaded = _saved_without(arch_config("slim-2x"), "color_path", tmp_path)
    assert loaded.config.color_path is False and torch.equal(loaded.stylize(x), old.stylize(x))
    tf = new_transformer("slim-2x", seed=4, device="cpu", precision="fp32", color_path=True)
    torch.nn.init.normal_(tf.net.color1x1.weight, std=0.1)
    back = load_transformer(tf.save(tmp_path / "c.pth"), device="cpu", precision="fp32")
    assert back.config.color_path is True and torch.equal(back.stylize(x), tf.stylize(x))


def test_skip_map_starts_at_zero_and_remaps_colours_pixel_by_pixel(tmp_path):
    """skip_map N: 1x1 conv 3 -> N, ReLU, 1x1 conv N -> 3 on the skip, added to it. Zero at the start (the network is
    slim-2x's at the same seed); a map that sends every colour c to c + f(c) moves each untrained output pixel by f
    of its 2x2-averaged input colour, resized back up, and nothing else: a per-pixel map, no spatial mixing."""
    x = torch.rand(1, 3, 48, 32)  # multiples of 16: no padding
    plain = build_network("slim-2x", seed=0, skip_chroma=1.0, head_zero_init=True, skip_norm=False)
    net = build_network("slim-2x", seed=0, skip_chroma=1.0, head_zero_init=True, skip_map=4, skip_norm=False)
    assert net.skip_map1.weight.shape == (4, 3, 1, 1) and net.skip_map2.weight.shape == (3, 4, 1, 1)
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))
        # f(c) = (relu(c_red - 0.5), 0, 0): only pixels whose averaged red is above 0.5 change, by that much
        net.skip_map1.weight.zero_()
        net.skip_map1.bias.zero_()
        net.skip_map1.weight[0, 0] = 1.0
        net.skip_map1.bias[0] = -0.5
        net.skip_map2.weight[0, 0] = 1.0
        change = net(x) - plain(x)
    mean_red = F.avg_pool2d(x[:, :1], 2)
    expected = F.interpolate((mean_red - 0.5).clamp(min=0), scale_factor=2, mode="bilinear", align_corners=False)
    inner = (..., slice(2, -2), slice(2, -2))  # the head's border rows come from its own (reflected) padding
    assert torch.allclose(change[:, :1][inner], expected[inner], atol=1e-5)
    assert change[:, 1:].abs().max() < 1e-6
    trained = build_network("slim-2x", seed=0, skip_map=4)
    trained(x).square().mean().backward()
    assert float(trained.skip_map2.weight.grad.abs().max()) > 0
    assert macs_per_pixel(arch_config("slim-2x", skip_map=8)) - macs_per_pixel("slim-2x") == 6 * 8 / 4
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(InputError, match="skip_map"):
            arch_config("slim-2x", skip_map=bad)
    with pytest.raises(InputError, match="skip_map: needs skip_into_head"):
        arch_config("slim-resize", skip_map=8)
    old, loaded = _saved_without(arch_config("slim-2x"), "skip_map", tmp_path)
    assert loaded.config.skip_map == 0 and torch.equal(loaded.stylize(x), old.stylize(x))
    tf = new_transformer("slim-2x", seed=4, device="cpu", precision="fp32", skip_map=8)
    torch.nn.init.normal_(tf.net.skip_map2.weight, std=0.1)
    back = load_transformer(tf.save(tmp_path / "m.pth"), device="cpu", precision="fp32")
    assert back.config.skip_map == 8 and torch.equal(back.stylize(x), tf.stylize(x))


def test_skip_norm_gives_the_skip_learned_statistics_whatever_the_photos_own(tmp_path):
    """skip_norm: the skip is instance-normalised with a learned affine (mean 0.5, deviation 0.25 at the start).
    With the head's feature taps at zero the untrained output depends on the skip alone, so a photo and the same
    photo darker and at lower contrast per channel give the same picture; the skip has the start's mean and
    deviation."""
    x = torch.rand(1, 3, 48, 32)
    net = build_network("slim-2x", seed=0, skip_chroma=1.0, head_zero_init=True, skip_norm=True)
    dim = torch.tensor([0.5, 0.8, 0.6])[None, :, None, None]
    with torch.no_grad():
        out, out_dim = net(x), net(x * dim + 0.1)
    assert torch.allclose(out, out_dim, atol=2e-3)  # up to the norm's eps against a smaller variance
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.full((3,), 0.5), atol=0.01)
    with torch.no_grad():
        skip = net.skip_in(block_mean(x, 2))  # the skip itself, at the head's half resolution
    assert torch.allclose(skip.std(dim=(0, 2, 3), unbiased=False), torch.full((3,), 0.25), atol=1e-3)
    trained = build_network("slim-2x", seed=0, skip_norm=True)
    trained(x).square().mean().backward()
    assert float(trained.skip_in.bias.grad.abs().max()) > 0
    assert macs_per_pixel(arch_config("slim-2x", skip_norm=True)) == macs_per_pixel("slim-2x")
    for bad in (1, "true", None):
        with pytest.raises(InputError, match="skip_norm"):
            arch_config("slim-2x", skip_norm=bad)
    with pytest.raises(InputError, match="skip_norm: needs skip_into_head"):
        arch_config("slim-resize", skip_norm=True)
    old, loaded = _saved_without(arch_config("slim-2x", skip_norm=False), "skip_norm", tmp_path)
    assert loaded.config.skip_norm is False and torch.equal(loaded.stylize(x), old.stylize(x))
    tf = new_transformer("slim-2x", seed=4, device="cpu", precision="fp32", skip_norm=True)
    torch.nn.init.normal_(tf.net.skip_in.weight, mean=0.2, std=0.05)
    back = load_transformer(tf.save(tmp_path / "n.pth"), device="cpu", precision="fp32")
    assert back.config.skip_norm is True and torch.equal(back.stylize(x), tf.stylize(x))


def test_head_zero_init_false_starts_the_head_random_but_keeps_the_skip_taps():
    zero = build_network("slim-2x", seed=0, head_zero_init=True, skip_gain=0.5, skip_chroma=1.0)
    rand = build_network("slim-2x", seed=0, head_zero_init=False, skip_gain=0.5, skip_chroma=1.0)
    for net in (zero, rand):  # the skip's taps: the gain at the centre of each channel's own tap, zero elsewhere
        w = net.deconv3.conv2d.weight.detach()[:, 4:]
        assert torch.equal(w, 0.5 * torch.eye(3)[:, :, None, None] * F.pad(torch.ones(1, 1), (1, 1, 1, 1)))
    assert float(zero.deconv3.conv2d.weight.detach()[:, :4].abs().max()) == 0.0
    features = rand.deconv3.conv2d.weight.detach()[:, :4]
    bound = 1 / (7 * 9) ** 0.5  # PyTorch's default conv init: uniform within 1 / sqrt(fan_in)
    assert 0.5 * bound < float(features.abs().max()) <= bound and float(features.std()) > 0.2 * bound
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        assert float((rand(x) - zero(x)).abs().mean()) > 1e-3  # random texture over the faded photo
    for bad in (0, 1, "false", None):
        with pytest.raises(InputError, match="head_zero_init"):
            arch_config("slim-2x", head_zero_init=bad)


def test_final_stage_options_are_checked():
    for bad in (-1, 2.5, True, "8", 4096):
        with pytest.raises(InputError, match="final_stage"):
            arch_config("slim", final_stage=bad)
    for bad in (0, 1, "false", None):
        with pytest.raises(InputError, match="final_norm"):
            arch_config("slim-2x", final_norm=bad)
    with pytest.raises(InputError, match="even unshuffle"):
        arch_config("slim", unshuffle=3, final_stage=8)
    with pytest.raises(InputError, match="final_stage"):  # the 2x head would have nothing to resize
        arch_config("slim-2x", unshuffle=2)
    shuffle2x = build_network("slim", seed=0, final_stage=8)  # a shuffle head after the stage works too: 2x
    assert shuffle2x.head_scale == 2 and shuffle2x.deconv3.conv2d.weight.shape == (12, 8, 3, 3)
    x = torch.rand(1, 3, 33, 47)
    with torch.no_grad():
        assert not_identity(shuffle2x).eval()(x).shape == x.shape
        plain = build_network("slim", seed=0, final_stage=8, unshuffle=2).eval()  # head at full resolution
        assert plain.head_scale == 1 and plain(x).shape == x.shape
