"""Logging set-up. Only the CLI configures logging; libraries just call ``structlog.get_logger()``."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(log_format: str = "auto", verbosity: int = 0) -> None:
    """structlog to stderr: console rendering on a terminal, JSON lines otherwise."""
    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if log_format == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def quiet_logging() -> None:
    """Only errors from here on (``mosaic run -q``), whatever ``-v`` asked for."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
