"""Content hashes of dataset files without re-reading 50,000 files every run.

Each file's sha256 is cached in one JSON file per dataset root (``<hash cache dir>/datasets/<root digest>.json``,
beside ``$STEPBENCH_HASH_CACHE``), keyed by relative path and reused while (size, mtime_ns) are unchanged. The first
fingerprint of a set reads every byte once; later ones only stat. An entry that cannot be stat'd (a symlink
loop, a dangling link) hashes as ``unreadable:<errno name>``. Fingerprints therefore follow content: a copy
of the same files elsewhere gets the same fingerprint, an edited file a different one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.provenance import sha256_file, write_json_cache


def cache_dir() -> Path:
    base = Path(os.environ.get("STEPBENCH_HASH_CACHE", Path.home() / ".cache" / "stepbench" / "file-hashes.json"))
    return base.parent / "datasets"


def file_hashes(root: Path, rels: list[str], threads: int = 8) -> dict[str, str]:
    """relative path -> sha256 for the given files under root (stat-cached, see module doc)."""
    root = Path(root).resolve()
    cfile = cache_dir() / (hashlib.sha256(str(root).encode()).hexdigest()[:24] + ".json")
    try:
        cache = json.loads(cfile.read_text())
    except (OSError, ValueError):
        cache = {}
    out, todo, stamps = {}, [], {}
    for rel in rels:
        try:
            st = (root / rel).stat()
        except OSError as e:     # a symlink loop or dangling link: listed, it fails to decode; hashed by its error
            out[rel] = "unreadable:" + errno.errorcode.get(e.errno, type(e).__name__)
            continue
        stamps[rel] = [st.st_size, st.st_mtime_ns]
        hit = cache.get(rel)
        if hit and hit[:2] == stamps[rel]:
            out[rel] = hit[2]
        else:
            todo.append(rel)
    if todo:
        with ThreadPoolExecutor(max(1, threads)) as ex:
            for rel, digest in zip(todo, ex.map(lambda r: sha256_file(root / r), todo)):
                out[rel] = digest
                cache[rel] = stamps[rel] + [digest]
        write_json_cache(cfile, cache)
    return out


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
