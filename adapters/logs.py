"""Structured logs: structlog events rendered as JSON through the stdlib ``logging`` tree.

A library must not print: records go to the ``simledger`` logger, silent until the
embedding program (or the demo and command line) configures ``logging``.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog


def get_logger(name: str = "simledger") -> Any:
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
