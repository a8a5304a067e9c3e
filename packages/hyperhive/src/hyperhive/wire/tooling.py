"""Generate docs/tooling.md, the tool contract for people who do not use Python:
`python -m hyperhive.wire.tooling > docs/tooling.md`.

The example's subject and body are written here once: the `nats` CLI line and the nats-py program in the docs are
both printed from them, and the tests run that program against a real hive, so the docs cannot drift from the
wire."""

from __future__ import annotations

import json

from pydantic import BaseModel

from hyperhive.wire import models, subjects
from hyperhive.wire.errors import ErrorCode

TOOL = "ci"
EXAMPLE = {"to": "alice", "body": "build 812 failed"}
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
ERROR_HEADER = "Nats-Service-Error"
VERBS: list[tuple[str, type[BaseModel], type[BaseModel], str]] = [
    ("send", models.SendRequest, models.SendReply, "a message to an agent, `operator`, or `*` (with `--broadcast`)"),
    ("ask", models.AskRequest, models.AskReply, "a question for the operator (with `--ask`)"),
    ("question", models.QuestionRef, models.Question, "one of its own questions, answered or not (with `--ask`)"),
]


def cli_example(seed: str = f"{TOOL}.nk") -> str:
    return f"nats req {subjects.tool(TOOL, 'send')} '{json.dumps(EXAMPLE)}' --nkey {seed}"


def nats_py_example(url: str = "nats://127.0.0.1:4222", seed: str = f"{TOOL}.nk") -> str:
    """A whole program: connect with the tool's key, send the example, print the reply or the refusal (written as
    ruff formats it, since ruff checks the docs' code too)."""
    q = json.dumps  # a JSON string of plain text is a Python string literal, in the quotes ruff prefers
    return f"""import asyncio
import json

import nats

BODY = {q(EXAMPLE)}


async def main() -> None:
    nc = await nats.connect({q(url)}, nkeys_seed={q(seed)})
    try:
        msg = await nc.request({q(subjects.tool(TOOL, "send"))}, json.dumps(BODY).encode(), timeout=5)
    finally:
        await nc.close()
    headers = msg.headers or {{}}
    if {q(ERROR_CODE_HEADER)} in headers:
        raise SystemExit(f"refused: {{headers['{ERROR_CODE_HEADER}']}}: {{headers.get('{ERROR_HEADER}')}}")
    print(json.loads(msg.data))


asyncio.run(main())
"""


def _schema(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(by_alias=True), indent=2)


def render() -> str:
    out = [
        "# Tools: publishing into the hive from scripts and services",
        "",
        "Generated from `hyperhive.wire` by `python -m hyperhive.wire.tooling` (`make wire-docs`); do not edit it.",
        "",
        "A tool is anything that is neither an agent nor the operator: a CI job, a cron script, a monitoring hook.",
        "The operator admits it with a key of its own and says what it may do; it never borrows the operator's",
        "credential.",
        "",
        "```sh",
        f"hivectl tool add {TOOL} --send alice,bob   # also --broadcast ('*'), --ask (operator questions)",
        "hivectl tool list",
        f"hivectl tool revoke {TOOL}                 # its connections are closed at once",
        "```",
        "",
        f"`tool add` makes the tool's NATS key (`<state dir>/tools/{TOOL}.nk`, mode 0600; `--seed-file` elsewhere,",
        "`--public-key` for a key made with `nk -gen user`) and sends only its public half to the spawner. The tool is",
        "alone in a NATS account of its own: it can publish only the verbs below on its own subjects, and subscribe",
        "only to `_INBOX.>` of that account (any NATS client's default reply inbox). It cannot reach an agent's plane,",
        "the operator's, JetStream or KV. Its messages are from `tool:<name>`; agents read them as",
        f"`From tool {TOOL}: …`, and an agent whose agent.nix says `hyperhive.acceptTools = false` takes none. Every",
        "tool message is audited (a `tool_message` event in HIVE_EVENTS).",
        "",
        "## Subjects",
        "",
        "| subject | body | reply | what |",
        "|---|---|---|---|",
    ]
    for verb, request, reply, what in VERBS:
        out.append(f"| `hive.tool.<name>.{verb}` | `{request.__name__}` | `{reply.__name__}` | {what} |")
    out += [
        "",
        "Every body is JSON; unknown fields are ignored and `kind` may be left out. A refusal comes back as an empty",
        f"reply with the headers `{ERROR_CODE_HEADER}` (one of the codes below) and `{ERROR_HEADER}` (a sentence",
        "saying what to do).",
        "",
        "Error codes: " + ", ".join(f"`{code.value}`" for code in ErrorCode) + ".",
        "",
        "## Example: the `nats` CLI",
        "",
        "```sh",
        cli_example(),
        "```",
        "",
        "## Example: nats-py",
        "",
        "```python",
        nats_py_example().rstrip(),
        "```",
        "",
        "## Schemas",
        "",
    ]
    for _verb, request, reply, _what in VERBS:
        for model in (request, reply):
            out += [f"### `{model.__name__}`", "", "```json", _schema(model), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
