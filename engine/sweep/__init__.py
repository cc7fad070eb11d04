"""Finding the ceiling: pure step rules, the runner that drives a controller step by step (and the TUI's
auto-ramp), the per-target session, the 4x4 token matrix and their reports."""
