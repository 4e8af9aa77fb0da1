"""Weights resolution: local paths, environment variables, Hugging Face ids (cache first, offline honoured)."""

import pytest

from bench.hub import WeightsNotFound, parse_hub, resolve_weights


def test_local_file_and_folder_with_filename(tmp_path):
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"x")
    assert resolve_weights(str(f), what="m") == f
    assert resolve_weights(str(tmp_path), what="m", filename="w.safetensors") == f
    with pytest.raises(WeightsNotFound, match="nope.pt"):
        resolve_weights(str(tmp_path), what="m", filename="nope.pt")


def test_env_variable_expanded_or_named_when_unset(tmp_path, monkeypatch):
    (tmp_path / "sit.pt").write_bytes(b"x")
    monkeypatch.setenv("SB_TEST_W", str(tmp_path))
    assert resolve_weights("${SB_TEST_W}/sit.pt", what="m") == tmp_path / "sit.pt"
    monkeypatch.delenv("SB_TEST_W")
    with pytest.raises(WeightsNotFound, match="SB_TEST_W is not set"):
        resolve_weights("$SB_TEST_W/sit.pt", what="model 'sit'")


def test_hub_ids_parsed():
    assert parse_hub("openai/clip-vit-base-patch16") == ("openai/clip-vit-base-patch16", None)
    assert parse_hub("hf://Lyy0725/iMF/imf_xl.pt") == ("Lyy0725/iMF", "imf_xl.pt")
    assert parse_hub("./weights/x.pt") is None


def test_uncached_hub_id_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound) as e:
        resolve_weights("nobody-here/no-such-model", what="metric 'pickscore'", filename="model.safetensors")
    msg = str(e.value)
    assert "metric 'pickscore'" in msg and "HF_HUB_OFFLINE" in msg and "huggingface-cli download" in msg


def test_cached_hub_snapshot_is_found_offline(tmp_path, monkeypatch):
    # Lay out a hub cache the way huggingface_hub does; resolution must find it with no network.
    cache = tmp_path / "hub"
    snap = cache / "models--org--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    got = resolve_weights("org/tiny", what="m")
    assert got == snap
    assert resolve_weights("hf://org/tiny/config.json", what="m") == snap / "config.json"
