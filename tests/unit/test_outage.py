"""The spool on its own (issue 7): usage written while Postgres is down waits in segment files,
and a replay charges each entry once, in order, even after a crash mid-write.

Charging it in a real ledger: tests/integration/test_outage.py; a proxy: tests/e2e/test_outage.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.quota.spool import Spool, SpoolEntry, read_entries, rejected_name, segment_suffix
from solaris_hooks.settings import Settings
from tests.support.spool_files import entry, segments


class TestSpool:
    def test_entries_come_back_in_order_and_the_segment_goes(self, tmp_path):
        """A replay charges every appended entry in order, then deletes the segment."""
        spool = Spool(tmp_path)
        written = [entry(raw_tokens=n, user_id="ana", factor=0.5, model="m") for n in (1, 2, 3)]
        for item in written:
            assert spool.append(item)
        assert spool.pending()
        charged_entries: list[SpoolEntry] = []

        async def charge(item: SpoolEntry) -> None:
            charged_entries.append(item)

        assert asyncio.run(spool.replay(charge)) == 3
        assert [(item.call_id, item.raw_tokens, item.user_id, item.factor) for item in charged_entries] == [
            (item.call_id, item.raw_tokens, item.user_id, item.factor) for item in written
        ]
        assert all(item.spooled_at for item in charged_entries)
        assert not spool.pending() and segments(tmp_path) == []

    def test_the_default_directory_is_under_the_data_dir(self, tmp_path):
        """spool_dir unset: SOLARIS_DATA_DIR/spool, else ./.solaris/spool."""
        assert Settings().spool_path({"SOLARIS_DATA_DIR": str(tmp_path)}) == tmp_path / "spool"
        assert Settings().spool_path({}) == Path(".solaris") / "spool"
        assert Settings(spool_dir="/var/lib/solaris/spool").spool_path({}) == Path("/var/lib/solaris/spool")

    def test_a_line_cut_by_a_crash_mid_write_is_skipped(self, tmp_path):
        """A torn last line (the writer died in os.write) costs that line only."""
        whole = entry(raw_tokens=7)
        (tmp_path / f"dead-1{segment_suffix}").write_bytes(whole.to_line() + entry().to_line()[:25])
        assert [item.call_id for item in read_entries(tmp_path / f"dead-1{segment_suffix}")] == [whole.call_id]
        seen: list[str] = []

        async def charge(item: SpoolEntry) -> None:
            seen.append(item.call_id)

        assert asyncio.run(Spool(tmp_path).replay(charge)) == 1
        assert seen == [whole.call_id]

    def test_an_outage_during_the_replay_keeps_the_segment(self, tmp_path):
        """DatabaseUnavailable stops the replay; the next one starts the segment over."""
        spool = Spool(tmp_path)
        for _ in range(3):
            spool.append(entry())
        calls: list[str] = []

        async def flaky(item: SpoolEntry) -> None:
            calls.append(item.call_id)
            if len(calls) == 2:
                raise DatabaseUnavailable("gone")

        with pytest.raises(DatabaseUnavailable):
            asyncio.run(spool.replay(flaky))
        assert len(segments(tmp_path)) == 1
        assert asyncio.run(spool.replay(flaky)) == 3
        assert segments(tmp_path) == []

    def test_a_segment_being_written_is_not_taken(self, tmp_path):
        """Another process's open segment (flock held) waits until its writer seals it."""
        writer, replayer = Spool(tmp_path), Spool(tmp_path)
        writer.append(entry())

        async def charge(item: SpoolEntry) -> None:
            pass

        assert asyncio.run(replayer.replay(charge)) == 0
        writer.seal()
        assert asyncio.run(replayer.replay(charge)) == 1

    def test_an_entry_that_cannot_be_charged_is_set_aside(self, tmp_path):
        """One bad entry goes to rejected.jsonl; the others are charged and the segment goes."""
        spool = Spool(tmp_path)
        bad, good = entry(raw_tokens=1), entry(raw_tokens=2)
        spool.append(bad)
        spool.append(good)

        async def charge(item: SpoolEntry) -> None:
            if item.call_id == bad.call_id:
                raise ValueError("broken")

        assert asyncio.run(spool.replay(charge)) == 1
        assert [item.call_id for item in read_entries(tmp_path / rejected_name)] == [bad.call_id]
        assert segments(tmp_path) == []
