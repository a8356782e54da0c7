"""Bad command-line overrides, said as one paragraph with exit code 2.

Hydra reports a composition error (an unknown group choice, a key not in the config, a value of
the wrong type, an override it cannot parse) itself, over several lines, and exits 1. With
``HYDRA_FULL_ERROR=1`` it raises instead; :func:`run_hydra_program` catches those errors and says
them in seedlock's form: the key, the bad value, what is valid. Any other exception is a fault,
not input, and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

EXIT_BAD_INPUT = 2
INPUT_ERRORS = (ConfigCompositionException, OverrideParseException, OmegaConfBaseException)
# OmegaConf's detail lines (full_key, reference_type, object_type) repeat what the message says.
DETAIL_PREFIXES = ("full_key:", "reference_type=", "object_type=", "See https://hydra.cc", "Config search path")


def run_hydra_program(program: str, hydra_main: Callable[[], None]) -> None:
    """Run a ``@hydra.main`` function; a bad override ends the process with one paragraph, exit 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors here instead of printing them
    try:
        hydra_main()
    except INPUT_ERRORS as error:
        print(f"{program}: error: {describe(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def describe(error: BaseException) -> str:
    """One paragraph for a Hydra/OmegaConf input error."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, choice = str(error.missing_cfg_file).rpartition("/")
        return (
            f"{group}={choice} is not valid: there is no conf/{error.missing_cfg_file}.yaml. "
            f"Valid choices for {group}: {', '.join(error.options)}."
        )
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else None
    text = " ".join(_lines(str(error)) + (_lines(str(cause)) if cause is not None else []))
    known = _valid_keys(cause or error)
    if known:
        text += f" Valid keys there: {', '.join(known)}."
    if isinstance(error, OverrideParseException):
        text += " Overrides are key=value (Hydra's override grammar); quote values with spaces or brackets."
    return text


def _lines(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(DETAIL_PREFIXES)]


def _valid_keys(error: BaseException) -> list[str]:
    """The keys of the config node an unknown key was looked up in, where OmegaConf kept it."""
    parent = getattr(error, "parent_node", None)
    if isinstance(parent, Mapping) and "not in struct" in str(error):
        return sorted(str(key) for key in parent.keys())
    return []
