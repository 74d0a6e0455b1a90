"""Weight files: the table, the manifest, the look-up order, hash checks and the offline message (no network)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch

from styletx.features import weights as wts
from styletx.errors import InputError, WeightsError

VGG19 = wts.known_file("vgg19")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_file(tmp_path):
    """A small valid state dict saved under a scratch name; returns its path."""
    path = tmp_path / "scratch.pth"
    torch.save({"features.0.weight": torch.ones(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, path)
    return path


@pytest.fixture
def trust(monkeypatch):
    """Make the table's vgg19 entry expect the sha256 prefix of a given file (so test files pass the check)."""

    def _trust(path: Path, *, full: bool = False) -> wts.WeightFile:
        digest = _sha(path)
        entry = wts.WeightFile(VGG19.name, "vgg19", VGG19.url, digest if full else digest[:8], None)
        monkeypatch.setitem(wts._BY_ARCH, "vgg19", entry)
        monkeypatch.setitem(wts._BY_NAME, VGG19.name, entry)
        return entry

    return _trust


def _place(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / VGG19.name
    dst.write_bytes(src.read_bytes())
    return dst


# ------------------------------------------------------------------------------------------------- the table


def test_table_records_only_what_is_known():
    assert {w.arch for w in wts.KNOWN_WEIGHTS} == {"vgg19", "vgg16"}
    for w in wts.KNOWN_WEIGHTS:
        stem = w.name[: -len(".pth")]
        assert w.url == f"https://download.pytorch.org/models/{w.name}"
        assert stem.split("-")[1] == w.sha256  # the prefix torchvision puts in the name, nothing invented
        assert w.sha256_is_prefix and len(w.sha256) == 8
        assert w.size is None


def test_committed_manifest_matches_write_manifest(tmp_path):
    committed = wts.repo_weights_dir() / "manifest.json"
    written = wts.write_manifest(tmp_path / "manifest.json")
    assert committed.read_text(encoding="utf-8") == written.read_text(encoding="utf-8")
    data = json.loads(written.read_text())
    assert [f["name"] for f in data["files"]] == [w.name for w in wts.KNOWN_WEIGHTS]
    assert set(data["files"][0]) >= {"name", "arch", "url", "sha256", "size"}


def test_unknown_arch_raises():
    with pytest.raises(WeightsError, match="resnet"):
        wts.known_file("resnet50")


# ------------------------------------------------------------------------------------------------- look-up


def test_search_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    dirs = wts.search_dirs()
    assert dirs[0] == tmp_path / "env"
    assert dirs[1] == tmp_path / "weights"
    assert dirs[2] == wts.repo_weights_dir()
    assert dirs[-1] == Path(torch.hub.get_dir()) / "checkpoints"
    assert str(dirs[-1]).startswith(str(Path(torch.hub.get_dir())))  # honours $TORCH_HOME (set by conftest)


def test_lookup_order_explicit_env_cwd_repo_hub(monkeypatch, tmp_path, tiny_file, trust):
    trust(tiny_file)
    monkeypatch.setattr(wts, "repo_weights_dir", lambda: tmp_path / "repo" / "weights")
    monkeypatch.chdir(tmp_path)
    hub = _place(tiny_file, wts.hub_checkpoints_dir())
    assert wts.find_weights("vgg19") == hub
    repo = _place(tiny_file, tmp_path / "repo" / "weights")
    assert wts.find_weights("vgg19") == repo
    cwd = _place(tiny_file, tmp_path / "weights")
    assert wts.find_weights("vgg19").resolve() == cwd.resolve()
    env = _place(tiny_file, tmp_path / "env")
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(tmp_path / "env"))
    assert wts.find_weights("vgg19") == env
    assert wts.find_weights("vgg19", explicit=tiny_file) == tiny_file
    assert wts.fetch_weights("vgg19") == env  # found: no download attempted


def test_nothing_found_returns_none():
    assert wts.find_weights("vgg19") is None


def test_explicit_missing_path_raises(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth"):
        wts.find_weights("vgg19", explicit=tmp_path / "nope.pth")


def test_explicit_path_with_other_name_is_not_hash_checked(tiny_file):
    assert wts.find_weights("vgg19", explicit=tiny_file) == tiny_file


# ------------------------------------------------------------------------------------------------ hash checks


def test_hash_prefix_mismatch_raises_naming_the_file(monkeypatch, tmp_path, tiny_file):
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(tmp_path / "env"))
    bad = _place(tiny_file, tmp_path / "env")  # its sha256 does not start with dcbb9e9d
    with pytest.raises(WeightsError) as info:
        wts.find_weights("vgg19")
    msg = str(info.value)
    assert str(bad) in msg and "dcbb9e9d" in msg and VGG19.url in msg and "\n" not in msg
    with pytest.raises(WeightsError):  # also when passed explicitly under the known name
        wts.find_weights("vgg19", explicit=bad)


def test_full_hash_is_checked_in_full(monkeypatch, tmp_path, tiny_file, trust):
    entry = trust(tiny_file, full=True)
    wts.verify(tiny_file, entry)
    wrong = wts.WeightFile(entry.name, "vgg19", entry.url, entry.sha256[:-1] + ("0" if entry.sha256[-1] != "0" else "1"), None)
    with pytest.raises(WeightsError, match="hash check"):
        wts.verify(tiny_file, wrong)
    sized = wts.WeightFile(entry.name, "vgg19", entry.url, entry.sha256, tiny_file.stat().st_size + 1)
    with pytest.raises(WeightsError, match="bytes"):
        wts.verify(tiny_file, sized)


def test_sha256_of_matches_hashlib_and_is_cached(tiny_file):
    assert wts.sha256_of(tiny_file) == _sha(tiny_file)
    key = next(k for k in wts._HASH_CACHE if k[0] == str(tiny_file.resolve()))
    assert wts._HASH_CACHE[key] == _sha(tiny_file)


# ----------------------------------------------------------------------------------------- offline / download


def test_offline_missing_message_names_file_url_hash_and_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(tmp_path / "mine"))
    with pytest.raises(WeightsError) as info:
        wts.fetch_weights("vgg19")
    msg = str(info.value)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    for part in (VGG19.name, VGG19.url, "dcbb9e9d", str(tmp_path / "mine"), str(wts.hub_checkpoints_dir()),
                 "STYLETX_OFFLINE"):
        assert part in msg
    assert "\n" not in msg


def test_failed_download_fails_fast_with_the_same_message(monkeypatch):
    monkeypatch.delenv("STYLETX_OFFLINE")  # conftest blocks sockets: the download attempt fails at once
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        wts.fetch_weights("vgg16")
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "download failed" in msg and "vgg16-397923af.pth" in msg and "397923af" in msg
    assert not (wts.hub_checkpoints_dir() / "vgg16-397923af.pth").exists()


# --------------------------------------------------------------------------------------------- loading, report


def test_load_state_dict_round_trip(tiny_file):
    sd = wts.load_state_dict(tiny_file)
    assert set(sd) == {"features.0.weight", "features.0.bias"}
    assert torch.equal(sd["features.0.weight"], torch.ones(64, 3, 3, 3))


def test_corrupt_file_raises_naming_it(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError, match="broken.pth"):
        wts.load_state_dict(bad)


def test_non_state_dict_raises(tmp_path):
    odd = tmp_path / "odd.pth"
    torch.save([1, 2, 3], odd)
    with pytest.raises(WeightsError, match="odd.pth"):
        wts.load_state_dict(odd)


def test_weights_report(monkeypatch, tmp_path, tiny_file, trust):
    rows = {r["arch"]: r for r in wts.weights_report()}
    assert rows["vgg19"]["status"] == "missing" and rows["vgg19"]["path"] is None
    assert rows["vgg16"]["url"].endswith("vgg16-397923af.pth")
    trust(tiny_file)
    placed = _place(tiny_file, tmp_path / "env")
    monkeypatch.setenv("STYLETX_WEIGHTS_DIR", str(tmp_path / "env"))
    rows = {r["arch"]: r for r in wts.weights_report()}
    assert rows["vgg19"]["status"] == "found" and rows["vgg19"]["path"] == str(placed)
    placed.write_bytes(b"changed")
    rows = {r["arch"]: r for r in wts.weights_report()}
    assert rows["vgg19"]["status"].startswith("bad:")
