"""``dataset.text``: character- or byte-level language modelling on a text file (by default the
tiny Shakespeare corpus shipped with mosaic-data).

The first ``1 - val_fraction`` of the file (in characters, or bytes at ``level: byte``) is the train
split and the rest the eval split, so the split is deterministic and never overlaps. Train items are
windows of ``block_size + 1`` tokens at offsets drawn per (seed, idx); eval items are consecutive
windows, so an evaluation pass reads the held-out text once. No padding and no teacher signals:
``input_ids`` and ``target_ids`` are (block_size,) int64, every target supervised.
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import torch

from mosaic.core.errors import DataError
from mosaic.data.common import INPUT_IDS, TARGET_IDS, SampleTooLongError, item_seed
from mosaic.data.config import TextConfig
from mosaic.data.corpora import corpus_bytes

#: The largest text file read (a corpus is held in memory about 20-30 times over as token ids).
MAX_TEXT_BYTES = 64 * 2**20


def read_text_file(path: Path) -> bytes:
    """A corpus file's bytes: a regular file (a FIFO would block the read for ever) of at most
    ``MAX_TEXT_BYTES``, read no further than that."""
    try:  # O_NONBLOCK: opening a FIFO waits for a writer; this way it opens and is refused below
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise DataError(f"dataset.text: {str(path)!r} is not a regular file")
            raw = file.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise DataError(f"dataset.text: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TEXT_BYTES:
        raise DataError(f"dataset.text: {str(path)!r} is larger than {MAX_TEXT_BYTES:,} bytes (MAX_TEXT_BYTES)")
    return raw

class TextDataset(torch.utils.data.Dataset):
    """``vocab_size``, ``encode(text)`` and ``decode(ids)`` describe the tokenisation."""

    def __init__(self, config: TextConfig) -> None:
        self.config = config
        self.block_size = config.block_size
        if config.path is None:
            path = Path("tinyshakespeare (shipped with mosaic-data)")
            raw = corpus_bytes("tinyshakespeare")
        else:
            path = Path(config.path)
            raw = read_text_file(path)
        if not raw:
            raise DataError(f"dataset.text: {str(path)!r} is empty")
        if config.level == "byte":
            self.itos: list[str] | None = None
            self.vocab_size = 256
            ids = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"dataset.text: {str(path)!r} is not UTF-8 ({exc}); use level: byte") from None
            self.itos = sorted(set(text))
            self.vocab_size = len(self.itos)
            self._stoi = {ch: i for i, ch in enumerate(self.itos)}
            ids = torch.tensor([self._stoi[ch] for ch in text], dtype=torch.int64)
        cut = int(len(ids) * (1.0 - config.val_fraction))
        self.ids = ids[:cut] if config.split == "train" else ids[cut:]
        needed = config.block_size + 1
        if len(self.ids) < needed:
            raise SampleTooLongError(
                type(self).__name__, "block_size", needed, len(self.ids),
                f"block_size={config.block_size} (a window of block_size + 1 tokens) on the "
                f"{config.split} split of {str(path)!r}",
            )
        self.windows = len(self.ids) - needed + 1
        if config.split == "eval":
            default = (len(self.ids) - 1) // config.block_size
        else:
            default = max(1, len(self.ids) // config.block_size)
        self.num_samples = config.num_samples if config.num_samples is not None else default
        if config.split == "eval" and self.num_samples > default:
            raise DataError(
                f"dataset.text: num_samples={self.num_samples} consecutive eval windows need "
                f"{self.num_samples * config.block_size + 1} tokens; the eval split has {len(self.ids)}"
            )

    def encode(self, text: str) -> list[int]:
        if self.itos is None:
            return list(text.encode("utf-8"))
        unknown = sorted(set(text) - set(self._stoi))
        if unknown:
            raise DataError(f"dataset.text: characters not in the vocabulary: {unknown!r}")
        return [self._stoi[ch] for ch in text]

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of ``ids``; at byte level a window may cut a UTF-8 character, shown as U+FFFD."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self.itos is None:
            return bytes(values).decode("utf-8", errors="replace")
        return "".join(self.itos[i] for i in values)

    def __len__(self) -> int:
        return self.num_samples

    def offset(self, idx: int) -> int:
        c = self.config
        if c.split == "eval":
            return idx * c.block_size
        return random.Random(item_seed(c.seed, c.split, idx)).randrange(self.windows)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        if not 0 <= idx < len(self):
            raise IndexError(f"{type(self).__name__} index {idx} out of range [0, {len(self)})")
        start = self.offset(idx)
        window = self.ids[start : start + self.config.block_size + 1]
        return {
            INPUT_IDS: window[:-1].clone(),
            TARGET_IDS: window[1:].clone(),
        }
