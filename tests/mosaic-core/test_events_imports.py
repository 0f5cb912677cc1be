"""The event substrate must stay importable without torch: only the codec's tensor paths need it."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE_IMPORTS = [
    "import mosaic.core",
    "import mosaic.core.plugin",
    "import mosaic.core.events",
    "from mosaic.core import EventEnvelope, EVENT_DELIMITER, EVENT_PAD_ID, EVENT_VOCAB_SIZE",
    "import mosaic.core.events.codec",
    "from mosaic.core.events.codec import StreamingEventDecoder, decode_event_bytes",
]


@pytest.mark.parametrize("statement", TORCH_FREE_IMPORTS)
def test_import_does_not_import_torch(statement):
    probe = f"{statement}\nimport sys\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_bytes_level_codec_and_streaming_work_without_torch():
    probe = (
        "import sys\n"
        "from mosaic.core import EventEnvelope\n"
        "from mosaic.core.events.codec import StreamingEventDecoder, decode_event_bytes\n"
        "e = EventEnvelope('Message', {'text': 'hi'}, 'user')\n"
        "assert decode_event_bytes(e.to_bytes()) == e\n"
        "d = StreamingEventDecoder()\n"
        "assert d.feed(e.to_bytes() + b'\\n') == [e]\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
