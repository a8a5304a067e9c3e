"""docs/nixos.md's options reference is what the modules say (names, types, defaults, examples, descriptions)."""

from tests.deploy.reference import DOC, reference, section


def test_the_options_reference_in_the_docs_is_generated_from_the_modules() -> None:
    assert section(DOC.read_text()) == reference(), "run `python -m tests.deploy.reference` to regenerate it"


def test_the_reference_names_every_option_of_both_modules() -> None:
    text = reference()
    for name in ("services.hyperhive.enable", "services.hyperhive.agents.memoryMax", "hyperhive.acceptTools"):
        assert f"**`{name}`**" in text
    assert "**`hyperhive.mcpServers.<name>.allowedTools`**" in text
