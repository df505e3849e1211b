import pytest

from facegraph.core.errors import FacegraphError, ImageIOError, InputError


def test_message_names_where_and_what_to_do():
    e = ImageIOError("file not found", file="/a/b.exr", frame=1001, hint="check the path")
    assert str(e) == "file not found [file=/a/b.exr, frame=1001]. check the path"
    assert isinstance(e, OSError) and isinstance(e, FacegraphError)


def test_with_context_adds_without_overwriting():
    e = InputError("bad", node="3")
    e.with_context(node="4 (X)", file="g.yaml")
    assert e.context == {"node": "3", "file": "g.yaml"}
    assert "file=g.yaml" in str(e)
    with pytest.raises(ValueError):
        raise e
