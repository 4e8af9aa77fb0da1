"""Where weights come from: a local path, an environment variable, or a Hugging Face id (cache first).

One function, `resolve_weights`, used by every adapter and metric that loads published weights, so each
gives the same clear error when the weights are not on this machine:

- ``/abs/or/relative/path`` that exists -> that file or folder;
- ``$VAR`` or ``${VAR}/file.pt`` -> the environment variable expanded (unset -> an error naming it);
- ``org/name`` -> the Hugging Face snapshot folder; ``hf://org/name/path/in/repo`` -> that one file
  (or ``filename=`` given by the adapter). The local HF cache is tried first, so a cached model works with no
  network; with ``HF_HUB_OFFLINE=1`` the hub is never contacted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ENV = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


class WeightsNotFound(FileNotFoundError):
    """Weights that are not on this machine; the message says where to put them."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def expand_env(ref: str, what: str) -> str:
    """Expand ``$VAR`` / ``${VAR}``; an unset variable is an error naming it and what it should hold."""
    def sub(m: re.Match) -> str:
        val = os.environ.get(m.group(1))
        if not val:
            raise WeightsNotFound(f"{what}: environment variable {m.group(1)} is not set (it should give the "
                                  f"location used in {ref!r})")
        return val
    return _ENV.sub(sub, ref)


def parse_hub(ref: str) -> tuple[str, str | None] | None:
    """(repo_id, file in repo or None) for a hub reference, else None."""
    if ref.startswith("hf://"):
        parts = ref[5:].strip("/").split("/")
        if len(parts) < 2:
            return None
        return "/".join(parts[:2]), ("/".join(parts[2:]) or None)
    if _REPO_ID.match(ref):
        return ref, None
    return None


def _hub_fetch(repo: str, filename: str | None, revision: str | None, local_only: bool) -> Path:
    import huggingface_hub as hh
    if filename:
        return Path(hh.hf_hub_download(repo, filename, revision=revision, local_files_only=local_only))
    return Path(hh.snapshot_download(repo, revision=revision, local_files_only=local_only))


def resolve_weights(ref: str, *, what: str, filename: str | None = None, revision: str | None = None) -> Path:
    """A local path for ``ref`` (see the module doc), or `WeightsNotFound` saying how to get it here."""
    if not ref or not str(ref).strip():
        raise WeightsNotFound(f"{what}: no weights given")
    ref = expand_env(str(ref), what)
    p = Path(ref).expanduser()
    if p.exists():
        if filename and p.is_dir():
            f = p / filename
            if not f.exists():
                raise WeightsNotFound(f"{what}: {str(f)!r} not found in folder {str(p)!r}")
            return f
        return p
    hub = parse_hub(ref)
    if hub is None:
        raise WeightsNotFound(f"{what}: {ref!r} is neither an existing file or folder nor a Hugging Face id "
                              f"('org/name' or 'hf://org/name/file')")
    repo, in_repo = hub
    in_repo = in_repo or filename
    try:
        return _hub_fetch(repo, in_repo, revision, local_only=True)
    except Exception as cached_err:   # noqa: BLE001 - not cached: fall through to the hub unless offline
        if _offline():
            raise WeightsNotFound(_missing_msg(what, repo, in_repo, "HF_HUB_OFFLINE is set")) from cached_err
    try:
        return _hub_fetch(repo, in_repo, revision, local_only=False)
    except Exception as err:   # noqa: BLE001 - network, auth, missing file: one message
        raise WeightsNotFound(_missing_msg(what, repo, in_repo, f"{type(err).__name__}: {err}")) from err


def _missing_msg(what: str, repo: str, in_repo: str | None, why: str) -> str:
    target = f"{repo}/{in_repo}" if in_repo else repo
    dl = f"huggingface-cli download {repo}" + (f" {in_repo}" if in_repo else "")
    return (f"{what}: {target!r} is not in the local Hugging Face cache and could not be downloaded ({why}). "
            f"On a machine with network run `{dl}` (then copy ~/.cache/huggingface here), or download the "
            f"weights yourself and give their local path instead of the hub id")
