"""Capacity planning: measured goodput at an SLO -> GPUs, nodes, $/month, kWh/month, break-even API price."""
