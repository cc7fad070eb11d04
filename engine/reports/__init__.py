"""Every report a session produces: run summary, phases, session report and rendering, export, sweep report,
the HTML report and its charts, and the one number format they share."""
