"""Every report a session produces: run summary, phases, session report and rendering, export, sweep report."""
