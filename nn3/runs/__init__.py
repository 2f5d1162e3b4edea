"""A run as a user sees it: configs, sessions that save and resume themselves, and read-back.

    >>> from nn3.runs import config, inspect, session

``config`` turns a preset (``presets``) and flags into a checked config; ``session``
starts and resumes a run in its directory, stopping cleanly on a signal (``stop``),
saving through ``saver`` what ``checkpoint`` says a checkpoint holds; ``inspect``
restores, replays, exports and evaluates; ``cluster`` joins the processes of a run of
several (with JAX's coordinator in a process of its own: ``coordinator``), and
``watchdog`` ends them in one line when one is lost. The library behind every ``nn3``
command.
"""
__all__ = [
    "checkpoint", "cluster", "config", "coordinator", "inspect", "presets", "saver", "session", "stop", "watchdog",
]
