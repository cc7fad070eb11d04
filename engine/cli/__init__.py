"""Headless commands (report, export, gpu, sweep, sim) and what every command shares; never imports textual."""
