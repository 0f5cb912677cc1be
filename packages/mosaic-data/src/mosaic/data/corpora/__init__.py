"""Text corpora shipped with mosaic-data, so that text presets run from a fresh install.

``tinyshakespeare``: the 1,115,394-character tiny Shakespeare file of Karpathy's char-rnn (works of
Shakespeare, public domain; see README.md beside this module), stored gzip-compressed.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

from mosaic.core.errors import DataError

#: name -> (file beside this module, SHA-256 of the decompressed bytes, decompressed size)
CORPORA: dict[str, tuple[str, str, int]] = {
    "tinyshakespeare": (
        "tinyshakespeare.txt.gz",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        1_115_394,
    ),
}


def corpus_bytes(name: str) -> bytes:
    """The decompressed bytes of a shipped corpus, checked against its recorded digest."""
    if name not in CORPORA:
        raise DataError(f"no shipped corpus {name!r} (shipped: {', '.join(sorted(CORPORA))})")
    filename, digest, size = CORPORA[name]
    with resources.files(__name__).joinpath(filename).open("rb") as packed, gzip.open(packed) as stream:
        data = stream.read(size + 1)  # bounded: a corrupt or swapped file cannot inflate without limit
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        raise DataError(f"shipped corpus {name!r} is damaged ({filename} does not match its digest); reinstall mosaic-data")
    return data
