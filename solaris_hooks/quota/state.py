"""What the request path shares, one per proxy process.

A call's pre-call hook leaves what its stream and its success or failure event need; the
background loops (spool replay, sweeper) work on the same database, spool and margins.
The functions of reserve.py, settle.py, streams.py and sweeper.py take this state;
QuotaService (service.py) is the state with those functions as its methods.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from solaris_hooks.db.database import Database
from solaris_hooks.quota.calls import CallsInFlight
from solaris_hooks.quota.groups import UserGroups
from solaris_hooks.quota.learned_margins import LearnedMargins
from solaris_hooks.quota.leases import Leases
from solaris_hooks.quota.metrics import Metrics
from solaris_hooks.quota.refusal_counts import RefusalCounts
from solaris_hooks.quota.settle_batches import SettleBatches
from solaris_hooks.quota.spool import Spool
from solaris_hooks.quota.tasks import BackgroundTasks
from solaris_hooks.settings import Settings


@dataclass(eq=False)
class QuotaState:
    settings: Settings  # replaced on a reload: read it per call, never keep it
    database: Database
    spool: Spool  # usage the database could not take, charged once it is back
    settle_batches: SettleBatches  # leased calls charged in memory, waiting for the next batch
    metrics: Metrics = field(default_factory=Metrics)
    calls: CallsInFlight = field(default_factory=CallsInFlight)
    margins: LearnedMargins = field(default_factory=LearnedMargins)
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    replay_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one replay at a time in this process
    leases: Leases = field(default_factory=Leases)  # slices of users' allowances this process holds
    lease_takes: dict[str, asyncio.Future] = field(default_factory=dict)  # a user's lease being taken
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one batch at a time
    groups: UserGroups = field(default_factory=UserGroups)  # users' groups as the ledger last said
    refusal_counts: RefusalCounts = field(default_factory=RefusalCounts)  # written with the next batch
