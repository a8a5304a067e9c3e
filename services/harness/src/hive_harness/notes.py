"""Notes compaction: when an agent's /state/notes.md outgrows its threshold, a short secondary `claude` session (no
tools, nothing saved) rewrites it. The old version is kept as a backup, the new one replaces it atomically, and a
compaction that fails for any reason leaves the notes exactly as they were.

Only the harness writes here, between turns, so there is a single writer; the model edits notes.md during its turns.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from hyperhive.files import write_atomic
from hyperhive.wire.models import NotesCompacted

KEEP_BACKUPS = 5
TIMEOUT_SECONDS = 300
SYSTEM = "You rewrite the working notes of an agent so they stay short and complete."
INSTRUCTIONS = """You maintain the working notes of {agent}, an agent in a hive of Claude Code agents. The notes
below have grown to {size} bytes; rewrite them to well under {target} bytes. Keep every open task, commitment,
decision, name, path and fact another agent or the operator relies on; drop what is finished, repeated or stale.
Answer with the new notes only, in Markdown, with no preamble.

<notes>
{notes}
</notes>"""


class Failed(Exception):
    """Why a compaction left the notes as they were."""


async def compact_notes(
    notes: Path, *, agent: str, claude: Sequence[str], model: str, env: Mapping[str, str], threshold: int
) -> NotesCompacted:
    started, t = datetime.now(UTC), time.monotonic()
    original = await asyncio.to_thread(notes.read_bytes)
    after, reason = len(original), ""
    try:
        rewritten = await _rewrite(
            original, agent=agent, claude=claude, model=model, env=env, threshold=threshold, cwd=notes.parent
        )
        if len(rewritten) >= len(original):
            raise Failed("the rewrite was not shorter than the notes")
        await asyncio.to_thread(_replace, notes, original, rewritten)
        after = len(rewritten)
    except Failed as exc:
        reason = str(exc)
    return NotesCompacted(
        agent=agent,
        at=started,
        before_bytes=len(original),
        after_bytes=after,
        duration_ms=int((time.monotonic() - t) * 1000),
        ok=not reason,
        reason=reason,
    )


async def _rewrite(
    original: bytes,
    *,
    agent: str,
    claude: Sequence[str],
    model: str,
    env: Mapping[str, str],
    threshold: int,
    cwd: Path,
) -> bytes:
    """The secondary session: no tools, no MCP servers, nothing saved; its answer is the new notes."""
    prompt = INSTRUCTIONS.format(
        agent=agent, size=len(original), target=threshold // 2, notes=original.decode(errors="replace")
    )
    argv = [*claude, "-p", prompt, "--output-format", "json", "--model", model, "--tools", ""]
    argv += ["--no-session-persistence", "--strict-mcp-config", "--system-prompt", SYSTEM]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        raise Failed(f"the claude CLI could not be started ({exc.strerror})") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Failed(f"the rewrite took longer than {TIMEOUT_SECONDS} s") from None
    try:
        result = json.loads(out)
    except ValueError:
        raise Failed(f"the claude CLI exited with code {proc.returncode} and no result") from None
    text = str(result.get("result") or "").strip()
    if result.get("is_error") or not text:
        raise Failed(f"the model gave no notes ({text[:200] or 'empty answer'})")
    return (text + "\n").encode()


def _replace(notes: Path, original: bytes, rewritten: bytes) -> None:
    if notes.read_bytes() != original:
        raise Failed("the notes changed while they were being rewritten")
    backup(notes, original)
    write_atomic(notes, rewritten.decode())


def backup(notes: Path, content: bytes) -> Path:
    """Keep the old notes as notes-backups/notes-<UTC time>.md, the newest few only."""
    folder = notes.parent / "notes-backups"
    folder.mkdir(exist_ok=True)
    path = folder / f"notes-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.md"
    path.write_bytes(content)
    for old in sorted(folder.glob("notes-*.md"))[:-KEEP_BACKUPS]:
        old.unlink()
    return path
