"""The one exception type for mistakes a user can make (bad input, bad files, bad URLs)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user caused and can fix; the CLI prints it as one line and exits with 2.

    `about` names the setting at fault in the core's own words ('status', 'task', 'split', …);
    the command line maps it to its flag (`cli.FLAGS`), so the core never names a flag.
    """

    def __init__(self, message: str, about: str | None = None) -> None:
        super().__init__(message)
        self.about = about


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix for an unknown name, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, word: str, choices: Iterable[str]) -> UserError:
    """The error for an unknown name: what was wrong, the closest match and what is valid."""
    names = sorted(choices)
    return UserError(
        f"unknown {kind} {word!r}{did_you_mean(word, names)}; choose from: {', '.join(names)}"
    )
