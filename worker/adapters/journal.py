"""The writer's journal in Redis: the rounds of one attempt of one job (see `worker.agent.journal`).

Only the attempt that claimed the job may start or extend it (the store's scripts check it), so an
attempt overtaken by the lease sweep cannot write into its successor's journal. Entries go through
the store's redactor: tool results and model messages may carry provider words.
"""

from __future__ import annotations

import logging

from worker.adapters.store import Store
from worker.agent.journal import JournalEntry
from worker.errors import StoreUnavailable

logger = logging.getLogger(__name__)


class RedisJournal:
    def __init__(self, store: Store, job_id: str, attempt: int) -> None:
        self._store = store
        self._job_id = job_id
        self._attempt = attempt
        self._stopped = False

    async def start(self, fingerprint: str) -> list[JournalEntry]:
        entries = await self._store.journal_start(self._job_id, self._attempt, fingerprint)
        if entries is None:  # a newer attempt owns the job: this one keeps nothing
            self._stopped = True
            return []
        return [JournalEntry.from_json(entry) for entry in entries]

    async def append(self, fingerprint: str, entry: JournalEntry) -> None:
        if self._stopped:
            return
        try:
            refused = await self._store.journal_append(
                self._job_id, self._attempt, fingerprint, entry.round, entry.to_json()
            )
        except StoreUnavailable as exc:  # that round is redone if this attempt dies; later ones go on
            logger.warning("job %s: round %d not journaled: %s", self._job_id, entry.round, exc.message)
            self._stopped = True
            return
        if refused is not None:
            logger.info("job %s: round %d not journaled (%s); later rounds neither", self._job_id,
                        entry.round, refused)  # fmt: skip
            self._stopped = True

    async def resumed(self, from_round: int, saved_tokens: int) -> None:
        logger.info("job %s: attempt %d resumed after round %d (%d tokens saved)", self._job_id,
                    self._attempt, from_round, saved_tokens)  # fmt: skip
        await self._store.record_resume(self._job_id, self._attempt, from_round, saved_tokens)
