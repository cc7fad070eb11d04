"""Assembling a session: the endpoint probed, the profile applied and calibrated, the collaborators wired."""
