"""The model adapter's prompt cache keys: one per project, ref, prompt version and role."""

from __future__ import annotations

import openai

from worker.adapters.llm import writer_and_reviewer
from worker.settings import Settings


def keys(**settings: str) -> tuple[str | None, str | None]:
    writer, reviewer = writer_and_reviewer(Settings(**settings), openai.AsyncOpenAI(api_key="x"))
    return writer._cache_key, reviewer._cache_key


def test_the_writer_and_the_reviewer_each_send_a_key_per_project_and_ref() -> None:
    writer, reviewer = keys(gitlab_project_id="42", gitlab_ref="main")
    assert writer and reviewer and writer != reviewer and writer.startswith("rfleet-writer-")
    assert keys(gitlab_project_id="42", gitlab_ref="main") == (writer, reviewer)  # the same for every job
    assert keys(gitlab_project_id="42", gitlab_ref="dev")[0] != writer
    assert keys(gitlab_project_id="42", openai_prompt_cache_key="false") == (None, None)
