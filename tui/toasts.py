"""Toasts that replace instead of stack: one per kind (six ``[`` presses show one cap toast, the newest).

A stack of five-second toasts covers the GPU panel, the newest part of the charts and the events, and its lower
toasts show figures already superseded. The event log keeps every line; a toast only says what just happened.
"""

from __future__ import annotations

import weakref
from typing import Any

from textual.app import App
from textual.notifications import Notification, Notify, SeverityLevel


class Toasts:
    """The app's toasts by kind. UI thread only."""

    def __init__(self, app: App[Any]) -> None:
        self._app = weakref.ref(app)
        self._by_kind: dict[str, Notification] = {}
        self.said: list[tuple[str, str]] = []  # (kind, message), every toast ever shown (tests read it)

    def say(self, kind: str, message: str, *, title: str = "", severity: SeverityLevel = "information",
            timeout: float = 5.0) -> None:
        app = self._app()
        if app is None:
            return
        old = self._by_kind.pop(kind, None)
        if old is not None and old in app._notifications:
            app._unnotify(old)  # Textual has no public "replace": removing the old one is its own API's way
        notification = Notification(message, title, severity, timeout, markup=False)
        self._by_kind[kind] = notification
        self.said.append((kind, message))
        app.post_message(Notify(notification))

    def showing(self) -> list[str]:
        """The messages of the toasts on screen now, oldest first (one per kind: a newer one replaced the old)."""
        app = self._app()
        if app is None:
            return []
        return [n.message for n in app._notifications]


_TOASTS: weakref.WeakKeyDictionary[App[Any], Toasts] = weakref.WeakKeyDictionary()


def toasts(app: App[Any]) -> Toasts:
    """The one Toasts of ``app``."""
    found = _TOASTS.get(app)
    if found is None:
        found = _TOASTS[app] = Toasts(app)
    return found
