"""The one precision policy and the backend choice, with the probes forced both ways.

Every case runs as if on a CPU whose bf16 is native (measured faster) and one whose bf16 is emulated (measured
slower), and with ONNX Runtime present and absent, so the suite passes the same on any CPU (with or without
AVX512-BF16 or AMX) and on a GPU machine. The probes run the real networks; only their clock is forced
(conftest's ``speeds``), except in the test that checks the real clock end to end.
"""

from __future__ import annotations

import json

import pytest
import torch

import styletx
import styletx.device as devices
from styletx import cache
from styletx.engines.feedforward import backends
from styletx.errors import InputError
from styletx.io.image import read_metadata

REAL_TIME_CALL = devices.time_call  # captured before conftest's fixture forces the clock
CPU = torch.device("cpu")
TINY = dict(channels=(8, 16, 32), res_blocks=1)
FAST = dict(size=32, iterations=2, backbone="random", scales=1)


def probe_close(bf16: bool) -> torch.Tensor:
    """A probe whose bf16 output is within 1% of fp32's."""
    return torch.ones(16) * (1.001 if bf16 else 1.0)


@pytest.fixture(params=["native", "emulated"])
def bf16_case(request, speeds):
    """Both capability cases: bf16 measured 2x faster than fp32, or 3x slower."""
    speeds["bf16"] = 0.5 if request.param == "native" else 3.0
    return request.param


@pytest.fixture(params=[True, False], ids=["ort-present", "ort-absent"])
def ort_present(request, monkeypatch):
    if not request.param:
        monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    return request.param


# ----------------------------------------------------------------------------------------- choose_precision


def test_auto_picks_bf16_only_where_measured_faster(bf16_case):
    choice = devices.choose_precision("auto", CPU, workload="unit", probe=probe_close)
    assert choice.bf16 == (bf16_case == "native")
    assert choice.reason == "measured"
    assert "bf16 0.5000 s" in choice.detail if bf16_case == "native" else "bf16 3.0000 s" in choice.detail
    assert choice.describe().startswith(choice.name + " (measured: ")


def test_bf16_that_changes_the_result_is_not_picked_even_when_faster(speeds):
    speeds["bf16"] = 0.1

    def probe_far(bf16: bool) -> torch.Tensor:
        return torch.ones(16) * (1.2 if bf16 else 1.0)

    choice = devices.choose_precision("auto", CPU, workload="unit-far", probe=probe_far)
    assert not choice.bf16 and "relative difference 0.2000" in choice.detail


@pytest.mark.parametrize("floor, picked", [(0.07, True), (0.02, False)])
def test_a_chaotic_output_is_judged_against_its_own_noise_floor(speeds, floor, picked):
    """bf16 9% off: picked when an 8-bit nudge of the input already moves fp32 by 7% (bound 10.5%), not at 2%."""
    speeds["bf16"] = 0.5

    def probe(bf16: bool) -> torch.Tensor:
        return torch.ones(16) * (1.09 if bf16 else 1.0)

    choice = devices.choose_precision("auto", CPU, workload=f"unit-floor-{floor}", probe=probe,
                                      noise_floor=lambda: torch.ones(16) * (1.0 + floor))
    assert choice.bf16 is picked
    assert ("within 0.1050" if picked else "over 0.05") in choice.detail


def test_the_noise_floor_is_not_measured_when_bf16_is_close_or_slow(bf16_case):
    calls = []
    devices.choose_precision("auto", CPU, workload="unit-floor-unused", probe=probe_close,
                             noise_floor=lambda: calls.append(1) or torch.ones(16))
    assert calls == []


def test_the_optimiser_probe_measures_a_real_noise_floor(speeds):
    """The real VGG19 (random weights) pixel gradient: the nudged-input floor is measured and reported."""
    from styletx.engines.optimize import choose_precision_for
    from styletx.features import build_extractor
    speeds["bf16"] = 0.5
    ex = build_extractor("vgg19", ["relu1_1", "relu3_1", "relu5_1"], weights=None, seed=0)
    choice = choose_precision_for(ex, "auto", CPU)
    assert choice.reason == "measured"
    error = float(choice.detail.split("relative difference ")[1].split()[0])
    assert error > 0  # bf16 really changed the gradient
    if error > devices.MAX_RELATIVE_ERROR:
        assert "8-bit nudge" in choice.detail or "over 0.05" in choice.detail


def test_slow_bf16_is_ruled_out_after_one_call_each(speeds):
    calls = []

    def probe(bf16: bool) -> torch.Tensor:
        calls.append(bf16)
        return probe_close(bf16)

    speeds["bf16"] = 3.0
    assert not devices.choose_precision("auto", CPU, workload="unit-early", probe=probe).bf16
    assert calls == [False, True]  # no timed repeats: 3x slower is decided by the warm-up calls
    calls.clear()
    speeds["bf16"] = 0.8
    devices.choose_precision("auto", CPU, workload="unit-close", probe=probe)
    assert len(calls) == 2 + 2 * devices.PROBE_REPEATS


def test_the_verdict_is_cached_per_machine_torch_and_workload(speeds, monkeypatch):
    speeds["bf16"] = 0.5
    first = devices.choose_precision("auto", CPU, workload="unit-cache", probe=probe_close)
    assert first.reason == "measured" and first.bf16
    speeds["bf16"] = 3.0  # the cache answers: no new measurement
    again = devices.choose_precision("auto", CPU, workload="unit-cache", probe=probe_close)
    assert again.reason == "cached" and again.bf16 and again.detail == first.detail
    stored = json.loads((cache.cache_dir() / cache.MEASUREMENTS_FILE).read_text())
    assert any("unit-cache" in key and "torch " + torch.__version__ in key for key in stored["precision"])
    # another workload, or another machine, is measured afresh
    assert devices.choose_precision("auto", CPU, workload="unit-other", probe=probe_close).reason == "measured"
    monkeypatch.setattr(cache, "machine_key", lambda device: "another cpu | torch x")
    other = devices.choose_precision("auto", CPU, workload="unit-cache", probe=probe_close)
    assert other.reason == "measured" and not other.bf16


def test_an_unwritable_cache_only_means_measuring_again(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("STYLETX_CACHE_DIR", str(blocker / "cache"))  # a folder cannot be made inside a file
    assert devices.choose_precision("auto", CPU, workload="unit-ro", probe=probe_close).reason == "measured"
    assert devices.choose_precision("auto", CPU, workload="unit-ro", probe=probe_close).reason == "measured"


def test_forced_precision_by_argument_and_environment(monkeypatch, bf16_case):
    assert devices.choose_precision("fp32", CPU, workload="w", probe=probe_close).reason == "forced"
    assert devices.choose_precision("bf16", CPU, workload="w", probe=probe_close).bf16
    monkeypatch.setenv(devices.ENV_PRECISION, "bf16")
    forced = devices.choose_precision("auto", CPU, workload="w", probe=probe_close)
    assert forced.bf16 and forced.reason == "forced by $STYLETX_PRECISION"
    assert not devices.choose_precision("fp32", CPU, workload="w").bf16  # an explicit argument wins
    monkeypatch.setenv(devices.ENV_PRECISION, "fp16")
    with pytest.raises(InputError, match="STYLETX_PRECISION"):
        devices.choose_precision("auto", CPU, workload="w")
    with pytest.raises(InputError, match="precision"):
        devices.choose_precision("half", CPU, workload="w")


def test_devices_without_bf16(monkeypatch):
    monkeypatch.setattr(devices, "bf16_supported", lambda device: False)
    auto = devices.choose_precision("auto", CPU, workload="w", probe=probe_close)
    assert not auto.bf16 and auto.reason == "unsupported"
    with pytest.raises(InputError, match="bf16 is not supported"):
        devices.choose_precision("bf16", CPU, workload="w")


def test_the_real_clock_measures_a_real_network(monkeypatch):
    """Unforced: whatever this host decides, the decision is a measurement with both times in it."""
    monkeypatch.setattr(devices, "time_call", REAL_TIME_CALL)
    net = styletx.new_transformer("slim", seed=0, device="cpu", **TINY)
    choice = backends.eager_precision(net.net, CPU, "auto")
    assert choice.reason == "measured" and "bf16 " in choice.detail and "fp32 " in choice.detail
    assert REAL_TIME_CALL(lambda: sum(range(1000)), CPU, "fp32") > 0


# ------------------------------------------------------------------------------------------- the engines


def test_optimisation_records_what_was_chosen_and_why(bf16_case, content_image, style_image, tmp_path):
    result = styletx.stylize(content_image, style_image, **FAST)
    record = result.record
    assert record.precision == ("bf16" if bf16_case == "native" else "fp32")
    assert "measured" in record.precision_reason
    path = result.save(tmp_path / "out.png")
    stored = json.loads(read_metadata(path)["styletx.record"])
    assert stored["precision"] == record.precision and stored["precision_reason"] == record.precision_reason
    second = styletx.stylize(content_image, style_image, **FAST).record  # same workload: the cache answers
    assert second.precision == record.precision and second.precision_reason.startswith(record.precision + " (cached")


def test_bf16_forced_and_fp32_forced_runs_both_work(content_image, style_image):
    for precision in ("fp32", "bf16"):
        record = styletx.stylize(content_image, style_image, precision=precision, **FAST).record
        assert record.precision == precision and record.precision_reason == f"{precision} (forced)"


def test_compile_auto_picks_the_fastest_measured_backend(bf16_case, ort_present, speeds, monkeypatch, tmp_path):
    for ort_faster in (True, False):
        monkeypatch.setenv("STYLETX_CACHE_DIR", str(tmp_path / f"cache-{ort_faster}"))  # measure each case afresh
        speeds["onnxruntime"] = 0.2 if ort_faster else 5.0
        model = styletx.new_transformer("slim", seed=0, device="cpu", **TINY).compile()
        if ort_present and ort_faster:
            assert model.backend == "onnxruntime" and not model.bf16
        else:
            assert model.backend == "torch"
            assert model.bf16 == (bf16_case == "native")
        info = model.describe()
        assert info["backend_reason"].startswith(model.backend + " (")
        x = torch.rand(1, 3, 37, 41, generator=torch.Generator().manual_seed(0))
        y = model.stylize(x)
        assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1


def test_the_backend_verdict_is_cached(speeds, tmp_path):
    speeds["onnxruntime"] = 0.2
    first = styletx.new_transformer("slim", seed=0, device="cpu", **TINY).compile()
    assert first.backend == "onnxruntime" and "measured" in first.describe()["backend_reason"]
    speeds["onnxruntime"] = 5.0
    again = styletx.new_transformer("slim", seed=1, device="cpu", **TINY).compile()
    assert again.backend == "onnxruntime" and "cached" in again.describe()["backend_reason"]


def test_winograd_and_onnxruntime_run_under_auto_precision_on_any_cpu(bf16_case, tmp_path):
    model = styletx.new_transformer("standard", seed=0, device="cpu", **TINY)
    x = torch.rand(1, 3, 24, 28, generator=torch.Generator().manual_seed(1))
    reference = styletx.new_transformer("standard", seed=0, device="cpu", precision="fp32", **TINY).stylize(x)
    for name in ("onnxruntime", "winograd"):
        model.compile(backend=name, cache_dir=tmp_path)
        assert model.backend == name and not model.bf16
        if name == "onnxruntime":  # the Winograd build takes a minute: tests/test_winograd.py checks its output
            assert float((model.stylize(x) - reference).abs().max()) < 1e-4
    forced = styletx.new_transformer("standard", seed=0, device="cpu", precision="bf16", **TINY)
    for name in ("onnxruntime", "winograd"):
        with pytest.raises(InputError, match="fp32"):
            forced.compile(backend=name)


def test_a_named_backend_that_cannot_run_here_says_why(monkeypatch):
    slim = styletx.new_transformer("slim", seed=0, device="cpu", **TINY)
    with pytest.raises(InputError, match="winograd runs the standard network only"):
        slim.compile(backend="winograd")
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    with pytest.raises(InputError, match=r"pip install 'styletx\[export\]'"):
        slim.compile(backend="onnxruntime")
    with pytest.raises(InputError, match="backend"):
        slim.compile(backend="tensorrt")


def test_training_and_its_checkpoint_round_trip_in_both_cases(bf16_case, tmp_path, content_image, style_image):
    folder = tmp_path / "data"
    folder.mkdir()
    content_image.save(folder / "a.png")
    result = styletx.train(style_image, folder, tmp_path / "m.pth", steps=2, size=32, batch_size=1, arch="slim",
                           backbone="random", checkpoint_every=0)
    assert result.precision == ("bf16" if bf16_case == "native" else "fp32")
    assert "measured" in result.precision_reason
    loaded = styletx.load_transformer(result.path, precision="fp32")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    trained = styletx.FeedForwardModel(result.transformer.net, precision="fp32")
    assert torch.allclose(loaded.stylize(x), trained.stylize(x), atol=1e-6)


def test_run_model_reports_precision_and_backend_in_the_metadata(bf16_case, tmp_path, content_image):
    model_path = styletx.new_transformer("slim", seed=0, device="cpu", **TINY).save(tmp_path / "m.pth")
    content_image.save(tmp_path / "c.png")
    (out,) = styletx.stylize_files(model_path, [tmp_path / "c.png"], tmp_path / "o.png", backend="torch")
    info = json.loads(read_metadata(out)["styletx.model"])
    assert info["precision"] == ("bf16" if bf16_case == "native" else "fp32")
    assert info["precision_reason"].startswith(info["precision"] + " (measured") and info["backend"].startswith("torch")
