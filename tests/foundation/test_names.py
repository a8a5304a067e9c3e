from pathlib import Path

import pytest
from pydantic import ValidationError

from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import SendRequest
from hyperhive.wire.names import check_agent_name, check_agent_ref, check_recipient
from hyperhive.wire.reference import render

BAD_NAMES = [
    "",
    "..",
    "a/b",
    "ALICE",
    "alice-",
    "9lives",
    "-x",
    "a" * 10,
    "twentycharacterslong",
    "al ice",
    "al.ice",
    "al*",
    "al>",
    "ａlice",  # fullwidth a: a unicode look-alike
    "аlice",  # Cyrillic a
    "alice\n",
    "é",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_agent_names_are_refused_with_their_code(name: str) -> None:
    with pytest.raises(HiveError) as err:
        check_agent_name(name)
    assert err.value.code == ErrorCode.INVALID_NAME


@pytest.mark.parametrize("name", ["a", "alice", "bob-2", "x1", "abcdefghi"])
def test_good_agent_names_pass(name: str) -> None:
    assert check_agent_name(name) == name


@pytest.mark.parametrize("name", ["operator", "system", "manager", "all"])
def test_reserved_names_cannot_be_taken_by_a_new_agent(name: str) -> None:
    with pytest.raises(HiveError) as err:
        check_agent_name(name)
    assert err.value.code == ErrorCode.INVALID_NAME


def test_manager_is_an_existing_agent_but_operator_is_not() -> None:
    assert check_agent_ref("manager") == "manager"
    with pytest.raises(HiveError):
        check_agent_ref("operator")
    assert check_recipient("operator") == "operator"
    assert check_recipient("*") == "*"


def test_a_name_that_is_a_subject_wildcard_never_becomes_a_subject() -> None:
    for bad in ["*", ">", "a.b", "a b"]:
        with pytest.raises(HiveError):
            subjects.agent(bad, "send")
    assert subjects.agent("alice", "send") == "hive.agent.alice.send"


def test_caller_comes_from_the_subject_token() -> None:
    assert subjects.caller("hive.agent.alice.send") == "alice"
    with pytest.raises(HiveError):
        subjects.caller("hive.broker.send")
    with pytest.raises(HiveError):
        subjects.caller("hive.agent.ALICE.send")


def test_models_reject_bad_names_with_the_same_sentence() -> None:
    with pytest.raises(ValidationError) as err:
        SendRequest(to="../etc", body="hi")
    assert "'../etc' is invalid" in str(err.value)


def test_models_ignore_unknown_fields() -> None:
    req = SendRequest.model_validate_json(b'{"to": "bob", "body": "hi", "from": "mallory", "future": 1}')
    assert req.to == "bob"
    assert not hasattr(req, "future")


def test_wire_reference_in_docs_is_generated_from_the_models() -> None:
    docs = Path(__file__).parents[2] / "docs" / "wire.md"
    assert docs.read_text() == render(), "run: uv run python -m hyperhive.wire.reference > docs/wire.md"
