"""Exit codes and the one exception every command raises for a problem the user can fix.

Lives in the engine so headless commands (``engine/cli``) and dashboard commands (``tui/commands``) share it
without the engine importing the TUI.
"""

from __future__ import annotations

EXIT_FAILED = 1  # the engine failed (a worker died, the server refused everything)
EXIT_USER = 2  # a problem the user can fix: one line, no traceback
EXIT_INTERRUPTED = 130  # Ctrl-C: the summary so far was still printed and written


class UserError(Exception):
    """A problem the user can fix (bad URL, bad file, missing permission): printed as one line, exit code 2."""
