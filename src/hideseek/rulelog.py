"""Logging for Snakemake jobs: messages go to the rule's log file and to the terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback

from .errors import InputError


@contextlib.contextmanager
def rule_logging(log_path: str, level: int = logging.INFO):
    """Log to `log_path` and stderr; on failure write a clear message (input errors) or a traceback."""
    handlers = [logging.FileHandler(log_path, mode="w", encoding="utf-8"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        yield logging.getLogger("hideseek")
    except InputError as error:
        logging.getLogger("hideseek").error("input error:\n%s", error)
        raise SystemExit(1) from None
    except BaseException:
        logging.getLogger("hideseek").error("failed:\n%s", traceback.format_exc())
        raise
    finally:
        for handler in handlers:
            handler.flush()
