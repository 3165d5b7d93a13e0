"""Ray Data's console INFO lines are held back while lmforge drives it; its log file and its
warnings are not."""

from __future__ import annotations

import io
import logging

import pytest

from lmforge.ray_logs import RAY_DATA_LOGGER, ray_data_console_warnings_only


@pytest.fixture
def ray_data_handlers():
    """Ray Data's own shape: a file handler at every level and a console one at INFO."""
    logger = logging.getLogger(RAY_DATA_LOGGER)
    console, log_file = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(console), logging.Handler()]
    handlers[0].setLevel(logging.INFO)
    file_handler = handlers[1]
    file_handler.emit = lambda record: log_file.write(record.getMessage() + "\n")  # type: ignore[method-assign]
    saved = (logger.level, logger.handlers[:], logger.propagate)
    logger.handlers[:] = handlers
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield console, log_file
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def test_console_gets_warnings_only_inside_and_everything_after(ray_data_handlers):
    console, log_file = ray_data_handlers
    child = logging.getLogger(f"{RAY_DATA_LOGGER}._internal.execution.streaming_executor")
    with ray_data_console_warnings_only():
        child.info("Starting execution of Dataset d1")
        child.warning("an actor died")
    child.info("after the block")
    assert console.getvalue().splitlines() == ["an actor died", "after the block"]
    assert log_file.getvalue().splitlines() == [
        "Starting execution of Dataset d1",
        "an actor died",
        "after the block",
    ]


def test_levels_come_back_after_an_error(ray_data_handlers):
    logger = logging.getLogger(RAY_DATA_LOGGER)
    with pytest.raises(RuntimeError), ray_data_console_warnings_only():
        raise RuntimeError("a block failed")
    assert [handler.level for handler in logger.handlers[:2]] == [logging.INFO, logging.NOTSET]


def test_a_console_already_quieter_stays_so(ray_data_handlers):
    logger = logging.getLogger(RAY_DATA_LOGGER)
    logger.handlers[0].setLevel(logging.ERROR)
    with ray_data_console_warnings_only():
        assert logger.handlers[0].level == logging.ERROR
    assert logger.handlers[0].level == logging.ERROR
