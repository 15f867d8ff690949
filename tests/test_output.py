"""The one output channel: rank 0 prints, other ranks stay quiet, and warnings logged anywhere under
the `arpo.` logger hierarchy (the tools log theirs) come out through the same console."""

import logging

import pytest

from arpo import output


@pytest.fixture
def channel():
    before = output.enabled()
    yield
    output.set_enabled(before)


def test_rank_zero_prints_and_other_ranks_do_not(channel, capsys):
    output.set_enabled(True)
    output.say("from rank zero")
    output.set_enabled(False)
    output.say("from another rank")
    err = capsys.readouterr().err
    assert "from rank zero" in err and "from another rank" not in err


def test_tool_warnings_reach_the_channel(channel, capsys):
    output.set_enabled(True)
    logging.getLogger("arpo.tools.sandbox").warning("python sandbox: %s", "no namespaces")
    output.set_enabled(False)
    logging.getLogger("arpo.tools.sandbox").warning("hidden on other ranks")
    err = capsys.readouterr().err
    assert "python sandbox: no namespaces" in err and "hidden on other ranks" not in err
