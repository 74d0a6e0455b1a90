"""Winograd F(4x4, 3x3) convolution, the exact layer rewrites, and the standard network built from them."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import styletx
from styletx.engines.feedforward import winograd as W
from styletx.runtime import release_freed_memory, retain_freed_memory
from styletx.errors import InputError
from styletx.engines.feedforward.net import build_network
from styletx.engines.feedforward.winograd_net import WinogradNet, supports


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def nchw(x):
    return x.permute(0, 3, 1, 2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_kernel_transform_shape_and_identity_tap():
    # a kernel with only the centre tap = 1 is the identity: the transform must say so after the round trip
    w = torch.zeros(2, 3, 3, 3)
    w[0, 0, 1, 1] = w[1, 2, 1, 1] = 1.0
    u = W.kernel_transform(w)
    assert u.shape == (36, 3, 2) and u.dtype == torch.float32
    x = torch.randn(1, 9, 11, 3)
    y = W.conv3x3(W.reflect_pad(x, 1), u, torch.zeros(2))
    assert torch.allclose(y[..., 0], x[..., 0], atol=1e-5) and torch.allclose(y[..., 1], x[..., 2], atol=1e-5)
    with pytest.raises(ValueError, match="3, 3"):
        W.kernel_transform(torch.zeros(2, 3, 5, 5))


@pytest.mark.parametrize("size", [(4, 4), (13, 10), (1, 7), (16, 33)])
def test_conv3x3_matches_conv2d_any_size(size):
    h, w = size
    x = torch.randn(2, 5, h, w)
    weight, bias = torch.randn(7, 5, 3, 3), torch.randn(7)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)
    out = nchw(W.conv3x3(W.replicate_pad1(nhwc(x)), W.kernel_transform(weight), bias))
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max() * 10


def test_layout_helpers_are_exact():
    x = torch.randn(2, 3, 12, 16)
    assert torch.equal(nchw(W.reflect_pad(nhwc(x), 4)), F.pad(x, (4, 4, 4, 4), mode="reflect"))
    assert torch.equal(nchw(W.replicate_pad1(nhwc(x))), F.pad(x, (1, 1, 1, 1), mode="replicate"))
    s = W.space_to_depth(nhwc(x), 4)
    assert s.shape == (2, 3, 4, 48)
    assert torch.equal(W.depth_to_space(s, 4), nhwc(x))
    # channel (i*r + j)*C + c holds pixel (i, j) of each block
    assert torch.equal(s[0, 1, 2, (1 * 4 + 3) * 3 + 2], x[0, 2, 4 + 1, 8 + 3])
    g, b = torch.rand(3) + 0.5, torch.randn(3)
    ref = F.instance_norm(x, weight=g, bias=b, eps=1e-5)
    assert torch.allclose(nchw(W.instance_norm(nhwc(x), g, b, 1e-5)), ref, atol=1e-5)


def test_upsample_conv_rewrite_is_exact():
    x = torch.randn(1, 4, 5, 7)
    weight, bias = torch.randn(6, 4, 3, 3), torch.randn(6)
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    ref = F.conv2d(F.pad(up, (1, 1, 1, 1), mode="reflect"), weight, bias)
    k = W.upsample_conv_kernel(weight)
    assert k.shape == (24, 4, 3, 3)
    direct = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, bias.repeat(4))
    assert torch.allclose(nchw(W.depth_to_space(nhwc(direct), 2)), ref, atol=1e-5)
    wino = W.conv3x3(W.replicate_pad1(nhwc(x)), W.kernel_transform(k), bias.repeat(4))
    assert torch.allclose(nchw(W.depth_to_space(wino, 2)), ref, atol=1e-4)


def test_blocked_9x9_rewrite_is_exact():
    x = torch.randn(1, 3, 16, 24)
    weight, bias = torch.randn(4, 3, 9, 9), torch.randn(4)
    ref = F.conv2d(F.pad(x, (4, 4, 4, 4), mode="reflect"), weight, bias)
    k = W.blocked_kernel(weight, 4)
    assert k.shape == (64, 48, 3, 3)
    grid = W.space_to_depth(W.reflect_pad(nhwc(x), 4), 4)
    direct = F.conv2d(nchw(grid), k, bias.repeat(16))
    assert torch.allclose(nchw(W.depth_to_space(nhwc(direct), 4)), ref, atol=1e-4)
    wino = W.conv3x3(grid, W.kernel_transform(k), bias.repeat(16))
    assert (nchw(W.depth_to_space(wino, 4)) - ref).abs().max() <= 1e-5 * ref.abs().max() * 10
    with pytest.raises(ValueError, match="9x9"):
        W.blocked_kernel(torch.zeros(1, 1, 7, 7), 4)


@pytest.mark.parametrize("value_range", [1.0, 255.0])
def test_winograd_net_matches_plain_network(value_range):
    # value_range 255: a pytorch/examples model ([0, 255] inside, wrapped to [0, 1])
    net = build_network("standard", seed=3, value_range=value_range).eval()
    x = torch.rand(2, 3, 20, 28)
    with torch.inference_mode():
        ref = net.body(x * value_range) / value_range
        out = WinogradNet(net, compiled=False)(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-4


def test_winograd_backend_only_where_it_applies():
    assert supports(build_network("standard", seed=0)) and not supports(build_network("slim", seed=0))
    with pytest.raises(InputError, match="winograd"):
        styletx.new_transformer(arch="slim", seed=0).compile(backend="winograd")
    with pytest.raises(InputError, match="backend"):
        styletx.new_transformer(arch="standard", seed=0).compile(backend="fastest")


def test_retain_freed_memory_is_idempotent():
    first = retain_freed_memory()
    assert isinstance(first, bool) and retain_freed_memory() == first


def test_release_undoes_retain_and_both_can_be_repeated():
    if not retain_freed_memory():
        pytest.skip("not glibc: the allocator is not tuned here")
    assert release_freed_memory() and release_freed_memory()  # defaults in effect, twice
    assert retain_freed_memory()  # and back, as the rest of this process had it


@pytest.mark.slow
def test_compiled_winograd_backend_matches_eager():
    """torch.compile builds the stages (~40-70 s the first time on 2 cores): slow."""
    tf = styletx.new_transformer(arch="standard", seed=1)
    x = torch.rand(1, 3, 37, 45)
    eager = tf.stylize(x)
    tf.compile(backend="winograd")
    assert tf.backend == "winograd" and tf.describe()["precision"] == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error", styletx.StyletxWarning)  # no fallback to eager
        y = tf.stylize(x)
    assert y.shape == x.shape and not y.requires_grad
    assert (y - eager).abs().max() <= 1e-4


def test_winograd_builds_a_bounded_number_of_shapes():
    net = WinogradNet(build_network("standard", seed=0), compiled=True)  # nothing is built until called
    assert net.accepts((1, 3, 64, 64))  # room left: a new size would be built
    shapes = [(1, 3, 16 + 4 * i, 16) for i in range(WinogradNet.MAX_SHAPES)]
    net.shapes.update(shapes)
    assert all(net.accepts(s) for s in shapes)  # built sizes run compiled
    assert not net.accepts((1, 3, 64, 64))  # the limit is reached: a new size is not built
    assert WinogradNet(build_network("standard", seed=0), compiled=False).accepts((1, 3, 64, 64))


def test_transformer_runs_unbuilt_sizes_eagerly_once_the_limit_is_reached():
    tf = styletx.new_transformer(arch="standard", seed=2)
    x = torch.rand(1, 3, 21, 30)
    eager = tf.stylize(x)
    tf.compile(backend="winograd")
    built = tf.backend_choice.run.winograd
    built.shapes.update((1, 3, 100 + 4 * i, 100) for i in range(WinogradNet.MAX_SHAPES))
    with warnings.catch_warnings():
        warnings.simplefilter("error", styletx.StyletxWarning)
        y = tf.stylize(x)  # a fifth size: no build, the eager path
    assert len(built.shapes) == WinogradNet.MAX_SHAPES and tf.backend == "winograd"
    assert torch.allclose(y, eager, atol=1e-6)


def test_failed_build_falls_back_to_eager_with_a_warning(monkeypatch):
    tf = styletx.new_transformer(arch="standard", seed=4)
    x = torch.rand(1, 3, 18, 22)
    eager = tf.stylize(x)
    tf.compile(backend="winograd")

    def no_compiler(self, batch):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    monkeypatch.setattr(WinogradNet, "__call__", no_compiler)
    with pytest.warns(styletx.StyletxWarning, match="winograd backend failed .*C\\+\\+ compiler"):
        y = tf.stylize(x)
    assert tf.backend == "torch" and torch.allclose(y, eager, atol=1e-6)
