"""What `compat.patched()` and `blocking.patched()` share: a patch of the stdlib that
lasts one `with` block, and is undone after it only if the block's entry made it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def patched_for_a_block(
    is_patched: Callable[[], bool], patch: Callable[[], object], unpatch: Callable[[], object]
) -> Iterator[None]:
    already = is_patched()
    patch()
    try:
        yield
    finally:
        if not already:
            unpatch()
