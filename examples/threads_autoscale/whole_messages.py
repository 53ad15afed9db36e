"""The client's side of the filesystem broker, writing each message whole.

kombu's filesystem transport creates a message file under its final name and then
writes it, so a worker that lists the folder in between reads an empty message and
dies ("Unrecoverable error: JSONDecodeError", cf. celery/kombu#1551); on a busy machine
that happens every few hundred messages. Here the client writes under a name no
consumer picks up and renames the file into place, which is atomic.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from kombu.transport import filesystem
from kombu.utils.json import dumps

from celery_timeouts.demo.workers import Broker


class Channel(filesystem.Channel):  # type: ignore[misc]
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # kombu's own name: ordered by time, and ".<queue>.msg" says which queue it is for.
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        partial = folder / f"{name}.partial"  # ends otherwise: no consumer takes it
        partial.write_text(dumps(payload))
        partial.rename(folder / name)


class Transport(filesystem.Transport):  # type: ignore[misc]
    Channel = Channel


def client_app(broker: Broker) -> Any:
    """`broker.client_app()`, sending through `Transport` (kombu takes the class as is)."""
    app = broker.client_app()
    app.conf.broker_transport = Transport
    return app
