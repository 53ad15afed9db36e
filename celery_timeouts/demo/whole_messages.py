"""kombu's filesystem transport for the sending side, writing each message whole.

kombu creates a message file under its final name and then writes it, so a worker that
lists the folder in between takes an empty message and dies ("Unrecoverable error:
JSONDecodeError", cf. celery/kombu#1551); on a busy machine that happens every few
hundred messages. This writes under a name no consumer takes, then renames the file
into place, which is atomic. Workers read with the stock transport: only whole files
ever carry a queue's name. `filesystem_broker_in` makes client apps send with it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

__all__ = ["Channel", "Transport"]


class Channel(filesystem.Channel):
    # The signature of kombu's filesystem Channel, which renames its base's `message`.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put `payload` on `queue`: written beside the queue's files, renamed into it."""
        # kombu's own name: ordered by time, and ".<queue>.msg" says which queue it is for.
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        partial = folder / f"{name}.partial"  # ends otherwise: no consumer takes it
        try:
            partial.write_text(dumps(payload))  # type: ignore[no-untyped-call]
            partial.rename(folder / name)
        except OSError as error:  # what kombu's own _put raises
            raise ChannelError(f"Cannot add file {name!r} to directory {folder}") from error


class Transport(filesystem.Transport):
    Channel = Channel
