"""Work a quota service runs beside the requests.

Loops that run from the first use of the database until close (the sweeper, the spool
replay, the refill, the mailer), and one-off side tasks a request starts but must not wait
for (the charge of an abandoned stream, a reservation's extension).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine


class BackgroundTasks:
    def __init__(self) -> None:
        self._loops: list[Callable[[], Coroutine[None, None, None]]] = []
        self._running: list[asyncio.Task] = []
        self._side_tasks: set[asyncio.Task] = set()

    def register(self, loop_forever: Callable[[], Coroutine[None, None, None]]) -> None:
        """Run `loop_forever` from start() until close()."""
        self._loops.append(loop_forever)

    def start(self) -> None:
        """Start the registered loops in the running event loop."""
        loop = asyncio.get_running_loop()
        self._running = [
            loop.create_task(task(), name=f"solaris-{getattr(task, '__name__', 'task')}") for task in self._loops
        ]

    def spawn(self, work: Coroutine[None, None, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._side_tasks.discard)

    async def side_tasks_done(self) -> None:
        """Wait for the one-off side tasks started so far."""
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

    async def close(self) -> None:
        # Charges of abandoned streams and reservation extensions finish first.
        await self.side_tasks_done()
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
