"""Nothing lost, nothing clobbered, never a hang (issue 10): a corpus of bad inputs over every entry point, and
signals sent to real processes.

Every bad input of the corpus is generated here and checked the same way: exit code 2, exactly one
``styletx: error:`` line and no traceback, no output or temporary file left, and every file that existed before
byte-identical afterwards. Signal tests run ``python -m styletx_launcher`` (the installed command's entry point)
in a subprocess and send SIGINT, SIGTERM and SIGHUP at start-up, mid-run and mid-write.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import styletx
from conftest import make_image
from styletx import atomic
from styletx.cli import main
from styletx.errors import CheckpointError, ImageError, InputError
from styletx.io.image import read_metadata, save_image

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--size", "32", "--iterations", "2", "--backbone", "random", "--scales", "1", "-q"]
TRAIN_FAST = ["--size", "32", "--steps", "2", "--batch-size", "1", "--arch", "slim", "--backbone", "random",
              "--checkpoint-every", "0", "-q"]


# ------------------------------------------------------------------------------------------------ the set-up


def _checkpoint(path: Path, mutate: Callable[[dict], None] = lambda c: None) -> Path:
    model = styletx.new_transformer("slim", seed=0, device="cpu")
    ckpt = model.checkpoint()
    mutate(ckpt)
    torch.save(ckpt, path)
    return path


def _nan(c: dict) -> None:
    key = next(iter(c["state_dict"]))
    c["state_dict"][key] = torch.full_like(c["state_dict"][key], float("nan"))


def _wrong_shape(c: dict) -> None:
    key = next(k for k, v in c["state_dict"].items() if v.ndim == 4)
    c["state_dict"][key] = torch.zeros(3, 3, 3, 3)


def _huge_channels(c: dict) -> None:
    c["arch"]["channels"] = [100000, 100000, 100000]


def _typed_channels(c: dict) -> None:
    c["arch"]["channels"] = ["16", "32", "64"]


def _list_state(c: dict) -> None:
    c["state_dict"] = [1, 2, 3]


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """A folder with a content and a style picture, a tiny checkpoint, a training folder, a FIFO, a link to a
    character device, a read-only-looking folder, and the run's cwd set there."""
    make_image(48, 40, seed=1).save(tmp_path / "content.png")
    make_image(40, 40, seed=2, kind="stripes").save(tmp_path / "style.png")
    make_image(2000, 2, seed=3).save(tmp_path / "thin.png")
    (tmp_path / "data").mkdir()
    make_image(40, 40, seed=4).save(tmp_path / "data" / "a.png")
    _checkpoint(tmp_path / "model.pth")
    os.mkfifo(tmp_path / "fifo.png")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "content.png").read_bytes()[:200])
    (tmp_path / "junk.pth").write_bytes(os.urandom(300))
    (tmp_path / "locked").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(atomic.ENV_RESCUE_DIR, str(tmp_path.parent / (tmp_path.name + "-rescued")))
    return tmp_path


def _snapshot(root: Path) -> Dict[str, bytes]:
    """Every regular file under ``root`` with its bytes (FIFOs and devices by name only)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or not p.is_file():
            out[str(p.relative_to(root))] = b"<special>"
        else:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def _lock(folder: Path, monkeypatch) -> None:
    """Make ``folder`` refuse new files (EACCES), as a read-only folder does for a user who is not root (the
    tests run as root too, where chmod does not stop writes)."""
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and Path(path).parent.resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def assert_refused(root: Path, args: List[str], needle: str, *, code: int = 2, before=None) -> None:
    """Run the CLI; exit ``code``, one error line containing ``needle``, no traceback, nothing new or changed."""
    before = _snapshot(root) if before is None else before
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("styletx: error:")]
    assert result.exit_code == code, result.output
    assert len(errors) == 1 and len(lines) == 1, result.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in result.output
    after = _snapshot(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:4]}"


# ------------------------------------------------------------------------------------------------ the corpus

CASES = {
    # run: inputs that are not regular files, never opened (a FIFO would block forever)
    "run-content-fifo": (["run", "fifo.png", "style.png", "-o", "o.png", *FAST], "FIFO"),
    "run-style-fifo": (["run", "content.png", "fifo.png", "-o", "o.png", *FAST], "FIFO"),
    "run-init-fifo": (["run", "content.png", "style.png", "--init", "fifo.png", "-o", "o.png", *FAST], "FIFO"),
    "run-content-device": (["run", "zero.png", "style.png", "-o", "o.png", *FAST], "character device"),
    "run-content-folder": (["run", "data", "style.png", "-o", "o.png", *FAST], "is a folder"),
    "run-content-missing": (["run", "nope.png", "style.png", "-o", "o.png", *FAST], "no such file"),
    "run-content-truncated": (["run", "truncated.png", "style.png", "-o", "o.png", *FAST], "truncated.png"),
    "run-weights-fifo": (["run", "content.png", "style.png", "--backbone", "vgg19", "--weights", "fifo.png",
                          "-o", "o.png", "-q"], "FIFO"),
    # run: sizes and ranges
    "run-thin-content": (["run", "thin.png", "style.png", "-o", "o.png", *FAST], "too thin"),
    "run-thin-style": (["run", "content.png", "thin.png", "-o", "o.png", *FAST], "too thin"),
    "run-size-8": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--size", "8"], "size"),
    "run-size-16-aspect": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--size", "16"],
                           "use --size 20"),
    "run-pool5-size-16": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--size", "16",
                           "--style-layers", "pool5"], "pool5 needs 32"),
    "run-scales-50": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--scales", "50"], "scales"),
    "run-seed-huge": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--seed", str(10**23)], "seed"),
    "run-style-scale-1000": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--style-scale", "1000"],
                             "style_scale"),
    "run-size-100000": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--size", "100000"],
                        "the largest --size that fits"),
    "run-device-cpu7": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--device", "cpu:7"], "cpu:7"),
    "run-max-pixels": (["run", "content.png", "style.png", "-o", "o.png", *FAST, "--max-pixels", "100"],
                       "--max-pixels"),
    # run: outputs
    "run-output-is-content": (["run", "content.png", "style.png", "-o", "content.png", "--overwrite", *FAST],
                              "input"),
    "run-output-is-init": (["run", "content.png", "style.png", "--init", "data/a.png", "-o", "data/a.png",
                            "--overwrite", *FAST], "input"),
    "run-output-is-style": (["run", "content.png", "style.png", "-o", "style.png", *FAST], "input"),
    "run-output-exists": (["run", "content.png", "style.png", "-o", "data/a.png", *FAST], "exists"),
    "run-output-missing-folder": (["run", "content.png", "style.png", "-o", "nowhere/o.png", *FAST],
                                  "does not exist"),
    "run-output-no-extension": (["run", "content.png", "style.png", "-o", "result", *FAST], "no file extension"),
    "run-output-bad-extension": (["run", "content.png", "style.png", "-o", "o.xyz", *FAST], "unsupported extension"),
    "run-output-locked": (["run", "content.png", "style.png", "-o", "locked/o.png", *FAST], "cannot write"),
    "run-snapshot-is-content": (["run", "o.step1.png", "style.png", "-o", "o.png", "--save-every", "1",
                                 "--overwrite", *FAST], "input"),
    "run-snapshot-exists": (["run", "content.png", "style.png", "-o", "style2.png", "--save-every", "1", *FAST],
                            "snapshot of an earlier run"),
    # run --model
    "model-fifo": (["run", "--model", "fifo.png", "content.png", "-o", "o.png", "-q"], "FIFO"),
    "model-missing": (["run", "--model", "nope.pth", "content.png", "-o", "o.png", "-q"], "no such"),
    "model-junk": (["run", "--model", "junk.pth", "content.png", "-o", "o.png", "-q"], "junk.pth"),
    "model-nan": (["run", "--model", "nan.pth", "content.png", "-o", "o.png", "-q"], "NaN"),
    "model-wrong-shape": (["run", "--model", "shape.pth", "content.png", "-o", "o.png", "-q"], "shape"),
    "model-huge-arch": (["run", "--model", "huge.pth", "content.png", "-o", "o.png", "-q"], "channels"),
    "model-typed-arch": (["run", "--model", "typed.pth", "content.png", "-o", "o.png", "-q"], "channels"),
    "model-state-list": (["run", "--model", "list.pth", "content.png", "-o", "o.png", "-q"], "not a mapping"),
    "model-content-fifo": (["run", "--model", "model.pth", "fifo.png", "-o", "o.png", "-q"], "FIFO"),
    "model-output-is-input": (["run", "--model", "model.pth", "content.png", "-o", "content.png", "--overwrite",
                               "-q"], "input"),
    "model-size-100000": (["run", "--model", "model.pth", "content.png", "-o", "o.png", "--size", "1000000", "-q"],
                          "largest size"),
    "model-output-locked": (["run", "--model", "model.pth", "content.png", "-o", "locked/o.png", "-q"],
                            "cannot write"),
    # train
    "train-style-fifo": (["train", "--style", "fifo.png", "--data", "data", "-o", "m.pth", *TRAIN_FAST], "FIFO"),
    "train-data-missing": (["train", "--style", "style.png", "--data", "nope", "-o", "m.pth", *TRAIN_FAST],
                           "no such"),
    "train-data-fifo": (["train", "--style", "style.png", "--data", "fifo.png", "-o", "m.pth", *TRAIN_FAST], "FIFO"),
    "train-output-folder": (["train", "--style", "style.png", "--data", "data", "-o", "data", *TRAIN_FAST],
                            "is a folder"),
    "train-output-locked": (["train", "--style", "style.png", "--data", "data", "-o", "locked/m.pth", *TRAIN_FAST],
                            "cannot write"),
    "train-output-is-style": (["train", "--style", "style.pth", "--data", "data", "-o", "style.pth", "--overwrite",
                               *TRAIN_FAST], "input"),
    "train-resume-fifo": (["train", "--style", "style.png", "--data", "data", "-o", "m.pth", "--resume", "fifo.png",
                           *TRAIN_FAST], "FIFO"),
    "train-resume-nan": (["train", "--style", "style.png", "--data", "data", "-o", "m.pth", "--resume", "nan.pth",
                          *TRAIN_FAST], "NaN"),
    "train-previews-exist": (["train", "--style", "style.png", "--data", "data", "-o", "m.pth", "--preview-every",
                              "1", *TRAIN_FAST], "preview of an earlier run"),
    "train-size-huge": (["train", "--style", "style.png", "--data", "data", "-o", "m.pth", *TRAIN_FAST, "--size",
                         "60000"], "fits"),
    "train-thin-style": (["train", "--style", "thin.png", "--data", "data", "-o", "m.pth", *TRAIN_FAST], "too thin"),
    # export
    "export-fifo": (["export", "fifo.png", "-o", "m.pt"], "FIFO"),
    "export-onto-checkpoint": (["export", "model.pt", "-o", "model.pt", "--overwrite"], "input"),
    "export-onto-checkpoint-link": (["export", "model.pth", "-o", "link.pt", "--overwrite"], "input"),
    "export-to-folder": (["export", "model.pth", "-o", "data"], "is a folder"),
    "export-exists": (["export", "model.pth", "-o", "old.pt"], "exists"),
    "export-wrong-shape": (["export", "shape.pth", "-o", "m.pt"], "shape"),
    "export-unknown-format": (["export", "model.pth", "-o", "m.xyz"], "unknown export format"),
    "export-locked": (["export", "model.pth", "-o", "locked/m.pt"], "cannot write"),
    # score
    "score-output-fifo": (["score", "fifo.png", "--content", "content.png", "--style", "style.png"], "FIFO"),
    "score-content-device": (["score", "content.png", "--content", "zero.png", "--style", "style.png"],
                             "character device"),
    "score-style-missing": (["score", "content.png", "--content", "content.png", "--style", "nope.png"], "no such"),
    "score-max-pixels": (["score", "content.png", "--content", "content.png", "--style", "style.png",
                          "--max-pixels", "10"], "--max-pixels"),
    # weights
    "manifest-onto-photo": (["weights", "--write-manifest", "content.png"], "exists"),
    "manifest-onto-folder": (["weights", "--write-manifest", "data", "--overwrite"], "folder"),
    "manifest-missing-folder": (["weights", "--write-manifest", "nowhere/m.json"], "does not exist"),
    "manifest-locked": (["weights", "--write-manifest", "locked/m.json"], "cannot write"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_cleanly(case, home, monkeypatch):
    args, needle = CASES[case]
    _checkpoint(home / "nan.pth", _nan)
    _checkpoint(home / "shape.pth", _wrong_shape)
    _checkpoint(home / "huge.pth", _huge_channels)
    _checkpoint(home / "typed.pth", _typed_channels)
    _checkpoint(home / "list.pth", _list_state)
    (home / "style.pth").write_bytes((home / "style.png").read_bytes())  # a picture under a checkpoint's name
    (home / "o.step1.png").write_bytes((home / "content.png").read_bytes())
    (home / "style2.step1.png").write_bytes(b"an earlier snapshot")
    (home / "m.preview-000001.png").write_bytes(b"an earlier preview")
    (home / "old.pt").write_bytes(b"an earlier export")
    (home / "model.pt").write_bytes((home / "model.pth").read_bytes())  # a checkpoint named like an export
    os.link(home / "model.pth", home / "link.pt")  # the same file under another name
    monkeypatch.setenv("STYLETX_MEMORY_LIMIT", "4G")  # the same budget on every machine
    if "locked" in " ".join(args):
        before = _snapshot(home)
        _lock(home / "locked", monkeypatch)
        assert_refused(home, args, needle, before=before)
    else:
        assert_refused(home, args, needle)
    assert not list(home.rglob(".*.tmp")), "a temporary file was left"


def test_the_corpus_is_big_and_covers_every_entry_point():
    assert len(CASES) >= 40
    commands = {args[0] + (" --model" if "--model" in args else "") for args, _ in CASES.values()}
    assert commands >= {"run", "run --model", "train", "export", "score", "weights"}


# ------------------------------------------------------------------------------------------------ the API


def test_api_refuses_bad_values_and_writes_nothing(home):
    before = _snapshot(home)
    content = np.asarray(make_image(48, 40, seed=1), dtype=np.float32)  # 0..255 floats: not clipped to white
    with pytest.raises(ImageError, match="divide by 255"):
        styletx.stylize(content, "style.png", size=32, iterations=1, backbone="random")
    with pytest.raises(ImageError, match="NaN"):
        styletx.stylize(torch.full((3, 16, 16), float("nan")), "style.png", size=32, backbone="random")
    with pytest.raises(ImageError, match="NaN"):
        styletx.load_image(torch.tensor([[[float("inf")]]]))
    with pytest.raises(CheckpointError, match="NaN"):
        styletx.load_transformer(_checkpoint(home.parent / "nan-api.pth", _nan))
    with pytest.raises(ImageError, match="NaN"):
        save_image(torch.full((1, 3, 8, 8), float("nan")), home / "nan.png")
    with pytest.raises(InputError, match="FIFO"):
        styletx.stylize_files("model.pth", ["fifo.png"], "o.png")
    with pytest.raises(InputError, match="input"):
        styletx.export("model.pth", "model.pth", overwrite=True)
    with pytest.raises(ImageError, match="FIFO"):
        styletx.train("fifo.png", "data", "m.pth", steps=1, size=32, backbone="random")
    with pytest.raises(ImageError, match="FIFO"):
        styletx.metrics.score("fifo.png", "content.png", "style.png")
    assert _snapshot(home) == before
    assert not list(home.rglob(".*.tmp"))


def test_edge_values_that_work(home):
    """Each of the issue's crashers either works or is refused: these work."""
    r = CliRunner().invoke(main, ["run", "content.png", "style.png", "-o", "cw0.png", *FAST, "--content-weight",
                                  "0", "--content-layers", ""], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", "content.png", "style.png", "-o", "seed.png", *FAST, "--seed",
                                  str(2**63 - 1)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", "content.png", "style.png", "-o", "data", *FAST], catch_exceptions=False)
    assert r.exit_code == 0 and (home / "data" / "content_stylized.png").exists(), r.output  # -o FOLDER
    meta = json.loads(read_metadata(home / "seed.png")["styletx.record"])
    assert str(home) not in json.dumps(meta) and str(home) not in json.dumps(read_metadata(home / "seed.png"))


def test_min_side_is_what_each_backbone_measures():
    """The validator's per-layer minimum (options.min_side) against the real networks: the minimum works and
    one pixel less fails (or, with the weight-free network's context border, gives an empty map), for every
    layer of every backbone."""
    from styletx.features import extractor_for
    from styletx.features.backbones import layer_names
    from styletx.options import min_side

    for backbone in ("random", "vgg19", "vgg16"):
        for layer in layer_names(backbone):
            need = min_side((layer,))
            ex = extractor_for(backbone, None, (layer,), device="cpu")
            with torch.no_grad():
                assert ex(torch.rand(1, 3, need, 40))[layer].shape[-2] >= 1
                if need > 1 and ex.context:  # the weight-free network's border lets it run: an empty map
                    assert ex(torch.rand(1, 3, need - 1, 40))[layer].shape[-2] == 0
                elif need > 1:
                    with pytest.raises(RuntimeError):
                        ex(torch.rand(1, 3, need - 1, 40))


def test_a_bad_file_in_a_folder_is_skipped_and_reported(home):
    folder = home / "photos"
    folder.mkdir()
    for i in range(3):
        make_image(40, 40, seed=i).save(folder / f"p{i}.png")
    (folder / "p1.png").write_bytes(b"not a picture")
    r = CliRunner().invoke(main, ["run", "--model", "model.pth", str(folder), "-o", "out", "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 2
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "skipped 1 of 3" in errors[0] and "p1.png" in errors[0]
    assert sorted(p.name for p in (home / "out").iterdir()) == ["p0_stylized.png", "p2_stylized.png"]


def test_disk_full_at_the_end_keeps_the_result(home, monkeypatch):
    real = atomic._fsync

    def full(path):
        if Path(path).resolve().parent == home.resolve():
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(atomic, "_fsync", full)
    r = CliRunner().invoke(main, ["run", "content.png", "style.png", "-o", "o.png", *FAST], catch_exceptions=False)
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert "No space left" in line and "the result was kept in" in line and "\n" not in line
    kept = Path(line.rsplit("kept in ", 1)[1])
    assert kept.exists() and kept.stat().st_size > 0
    assert not (home / "o.png").exists() and not list(home.glob(".*.tmp"))


def test_files_get_the_umask_mode(home):
    old = os.umask(0o022)
    try:
        styletx.new_transformer("slim", device="cpu").save(home / "c.pth")
        styletx.export(home / "c.pth", home / "c.pt")
        save_image(torch.rand(1, 3, 8, 8), home / "i.png")
        styletx.features.weights.write_manifest(home / "w.json")
    finally:
        os.umask(old)
    for name in ("c.pth", "c.pt", "i.png", "w.json"):
        assert (home / name).stat().st_mode & 0o777 == 0o644, name


def test_weight_file_errors_do_not_tell_users_to_delete_their_own_file(home):
    bad = home / "vgg19-dcbb9e9d.pth"
    bad.write_bytes(b"my own file")
    r = CliRunner().invoke(main, ["run", "content.png", "style.png", "-o", "o.png", "--backbone", "vgg19",
                                  "--weights", str(bad), "-q"], catch_exceptions=False)
    assert r.exit_code == 2 and "delete" not in r.stderr and "left as it is" in r.stderr


def test_third_party_warnings_stay_off_stderr(home, monkeypatch):
    import warnings

    real = styletx.cli.stylize

    def noisy(*args, **kwargs):
        warnings.warn("TypedStorage is deprecated", UserWarning)  # as torch does
        return real(*args, **kwargs)

    monkeypatch.setattr(styletx.cli, "stylize", noisy)
    r = CliRunner().invoke(main, ["run", "content.png", "style.png", "-o", "o.png", *FAST], catch_exceptions=False)
    assert r.exit_code == 0 and "TypedStorage" not in r.stderr


# ------------------------------------------------------------------------------------------------ signals


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["STYLETX_RESCUE_DIR"] = str(tmp / "rescued")
    env["STYLETX_PRECISION"] = "fp32"  # no precision probe: its cache write would be the first write
    return env


def _start(tmp: Path, args: List[str], harness: str = "") -> subprocess.Popen:
    """The styletx command in a subprocess (its launcher); ``harness``: Python run first, by the test only."""
    code = harness + "\nimport sys\nsys.argv[0] = 'styletx'\nimport styletx_launcher\nstyletx_launcher.main()\n"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=tmp, env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen, sig: int) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_at_start_up_one_line(home, sig):
    before = _snapshot(home)
    proc = _start(home, ["run", "content.png", "style.png", "-o", "o.png", *FAST])
    time.sleep(1.0)  # well inside the imports (one to ten seconds)
    line = _finish(proc, sig)
    assert signal.Signals(sig).name in line
    assert _snapshot(home) == before


# Mid-run and mid-write: a harness, run by the test only, reports the moment with a marker file (the library
# has no test-only code path). Mid-write, it also makes the disk slow: fsync sleeps before syncing.
MID_RUN = """
import os, styletx.engines.optimize as o
_real = o.optimize_image
def watched(*a, callback=None, **k):
    def cb(it):
        if it.step == 3:
            open(os.environ['MARK'], 'w').close()
        if callback: callback(it)
    return _real(*a, callback=cb, **k)
import styletx.api; styletx.api.optimize_image = watched
"""
SLOW_DISK = """
import os, time, styletx.atomic as a
_real = a._fsync
def slow(path):
    open(os.environ['MARK'], 'w').close()
    time.sleep(3)
    _real(path)
a._fsync = slow
"""


def _mid_run(home: Path, sig: int) -> None:
    os.environ["MARK"] = str(home / "mark")
    try:
        proc = _start(home, ["run", "content.png", "style.png", "-o", "o.png", "--size", "64", "--scales", "2",
                             "--iterations", "400", "--backbone", "random", "-q"], MID_RUN)
    finally:
        del os.environ["MARK"]
    _wait_for(home / "mark", proc)
    line = _finish(proc, sig)
    assert "saved the best image so far to o.png" in line and "not the 64x53 asked for" in line
    from PIL import Image

    assert Image.open(home / "o.png").size == (32, 27)  # interrupted at the first of two scales: said above
    record = json.loads(read_metadata(home / "o.png")["styletx.record"])
    assert record["interrupted"] and record["best_loss"] is not None and "Infinity" not in json.dumps(record)
    assert not list(home.glob(".*.tmp"))


def test_sigterm_mid_run_saves_best_so_far(home):
    _mid_run(home, signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_other_signals_mid_run(home, sig):
    _mid_run(home, sig)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_write_finishes_the_write(home, sig):
    os.environ["MARK"] = str(home / "mark")
    try:
        proc = _start(home, ["run", "content.png", "style.png", "-o", "o.png", *FAST], SLOW_DISK)
    finally:
        del os.environ["MARK"]
    _wait_for(home / "mark", proc)
    time.sleep(0.3)  # inside the slow write
    line = _finish(proc, sig)
    assert "o.png" in line
    from PIL import Image

    assert Image.open(home / "o.png").size == (32, 27)  # the whole picture, not a half
    assert not list(home.glob(".*.tmp"))


@pytest.mark.slow
def test_train_saves_on_sigterm_and_resume_continues(home):
    os.environ["MARK"] = str(home / "mark")
    harness = """
import os, styletx.engines.feedforward.train as t
_real = t.train_network
def watched(*a, callback=None, **k):
    def cb(p):
        if p.step == 2:
            open(os.environ['MARK'], 'w').close()
        if callback: callback(p)
    return _real(*a, callback=cb, **k)
import styletx.api; styletx.api.train_network = watched
"""
    try:
        proc = _start(home, ["train", "--style", "style.png", "--data", "data", "-o", "m.pth", "--size", "32",
                             "--steps", "100000", "--batch-size", "1", "--arch", "slim", "--backbone", "random",
                             "--checkpoint-every", "0", "-q"], harness)
    finally:
        del os.environ["MARK"]
    _wait_for(home / "mark", proc)
    line = _finish(proc, signal.SIGTERM)
    assert "saved the checkpoint at step" in line and "--resume" in line
    step = torch.load(home / "m.pth", weights_only=True)["training_state"]["step"]
    assert step >= 2
    r = subprocess.run([sys.executable, "-m", "styletx_launcher", "train", "--style", "style.png", "--data", "data",
                        "-o", "m.pth", "--resume", "m.pth", "--size", "32", "--steps", str(step + 2), "--batch-size",
                        "1", "--arch", "slim", "--backbone", "random", "--checkpoint-every", "0", "-q"],
                       cwd=home, env=_env(home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert torch.load(home / "m.pth", weights_only=True)["training_state"]["step"] == step + 2
