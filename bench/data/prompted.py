"""``prompted``: another dataset's reference images, with one free-form prompt per generated sample as its classes.

CLIP Score and PickScore score sample i against ``prompt_template.format(class_name=class_names[label_i])``. For
samples that were made from prompts rather than class labels (text-to-image outputs), this source makes every
prompt a class of its own (``class_names`` = the prompts file's lines, template ``{class_name}``), so a
``per_class`` plan with n = 1 gives sample i label i and prompt i. Everything about the reference images (length,
labels, batches, fingerprint, provenance) is the wrapped dataset's, so its cached reference statistics are shared.

Invariant: the prompts reach the cell key through ``options.prompts_sha256`` (options are hashed into every key);
opening refuses a prompts file whose bytes no longer match it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import torch
from pydantic import Field, ValidationInfo, field_validator

from bench.data.base import Dataset, DatasetCard, DatasetError, StrictOptions
from bench.data.stream import NonEmpty


def read_prompts(path: str | Path) -> tuple[list[str], str]:
    """(one prompt per line, sha256 of the file's bytes); a trailing newline ends the last line, and an empty
    line is an error naming it."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
        text = raw.decode("utf-8")
    except OSError as e:
        raise DatasetError(f"prompts file {str(p)!r}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"prompts file {str(p)!r}: not UTF-8 text (byte {e.start})") from None
    lines = text.splitlines()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if empty:
        raise DatasetError(f"prompts file {str(p)!r}: line {empty[0]} is empty (one prompt per line, one line per "
                           f"image)")
    if not lines:
        raise DatasetError(f"prompts file {str(p)!r} is empty")
    return lines, hashlib.sha256(raw).hexdigest()


class Prompted(Dataset):
    """Another dataset's reference images with a prompt per generated sample as its classes."""

    cards = {"prompted": DatasetCard(
        "prompted", title="another dataset's reference images with one prompt per generated sample "
        "(bench score --prompts)", folder=None, licence="that of the source dataset",
        get="set options.source, options.prompts and options.prompts_sha256")}

    class Options(StrictOptions):
        source: NonEmpty                                   # a registered dataset name (not 'prompted')
        options: dict[str, Any] = Field(default_factory=dict, validate_default=True)   # its options, validated
        prompts: NonEmpty                                  # a UTF-8 file: one prompt per line, line i for sample i
        prompts_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # the file's bytes: puts the prompts in the cell key

        @field_validator("options")
        @classmethod
        def _inner(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
            source = info.data.get("source")
            if source is None:
                return v
            if source == "prompted":
                raise ValueError("options.source cannot itself be 'prompted'")
            from bench import registry
            return registry.resolve("dataset", source).validate_options(v)

    def __init__(self, name: str, **options: Any):
        o = self.open_options(name, options)
        from bench import registry
        self.name = name
        self.inner = registry.resolve("dataset", o.source)(o.source, **o.options)
        self.prompts, sha = read_prompts(o.prompts)
        if sha != o.prompts_sha256:
            raise DatasetError(f"dataset {name!r}: prompts file {o.prompts!r} changed since this cell was planned "
                               f"(sha256 {sha[:12]}..., expected {o.prompts_sha256[:12]}...)")
        self.prompts_file, self.prompts_sha256 = o.prompts, sha
        self.class_names, self.prompt_template = list(self.prompts), "{class_name}"

    def __len__(self) -> int:
        return len(self.inner)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def labels(self) -> torch.Tensor:
        return self.inner.labels()

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.inner.reference_batches(batch_size)

    def provenance(self) -> dict[str, Any]:
        return {**self.inner.provenance(), "prompts": {"file": self.prompts_file, "sha256": self.prompts_sha256,
                                                       "count": len(self.prompts)}}
