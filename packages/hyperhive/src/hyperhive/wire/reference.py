"""Generate docs/wire.md from the wire contract itself: `python -m hyperhive.wire.reference > docs/wire.md`."""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel

from hyperhive.wire import errors, models, subjects


def _type(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"Annotated\[([^,\[\]]+), AfterValidator\([^)]*\)\]", r"\1", text)
    return text.replace("typing.", "").replace("hyperhive.wire.models.", "").replace("|", "\\|")


def _model(cls: type[BaseModel]) -> list[str]:
    out = [f"### `{cls.__name__}`", ""]
    if cls.__doc__:
        out += [inspect.cleandoc(cls.__doc__), ""]
    out += ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        wire_name = field.alias or name
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        desc = (field.description or "").replace("\n", " ").replace("|", "\\|")
        out.append(f"| `{wire_name}` | `{_type(field.annotation)}` | `{default}` | {desc} |")
    return [*out, ""]


def render() -> str:
    out = [
        "# Wire reference",
        "",
        "Generated from `hyperhive.wire` by `python -m hyperhive.wire.reference`; do not edit by hand.",
        "Every model ignores fields it does not know. Errors arrive as NATS micro error headers",
        "(`Nats-Service-Error-Code`, `Nats-Service-Error`) and are raised by `hyperhive.bus.call` as `HiveError`.",
        "",
        "## Subjects",
        "",
        "| builder | meaning |",
        "|---|---|",
    ]
    for name, fn in inspect.getmembers(subjects, inspect.isfunction):
        if fn.__module__ == subjects.__name__ and fn.__doc__:
            out.append(f"| `{name}{inspect.signature(fn)}` | {inspect.cleandoc(fn.__doc__).splitlines()[0]} |")
    out += [
        "",
        "Streams and buckets: "
        + ", ".join(f"`{getattr(subjects, c)}`" for c in dir(subjects) if c.endswith(("_STREAM", "_BUCKET"))),
        "",
        "## Error codes",
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    source = inspect.getsource(errors.ErrorCode)
    for code in errors.ErrorCode:
        doc = source.split(f'"{code.value}"', 1)[1].split('"""')[1].strip()
        out.append(f"| `{code.value}` | {doc} |")
    out += ["", "## Models", ""]
    for _, cls in inspect.getmembers(models, inspect.isclass):
        if issubclass(cls, models.WireModel) and cls is not models.WireModel and cls.__module__ == models.__name__:
            out += _model(cls)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
