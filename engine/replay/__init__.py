"""Sources that re-run recorded facts through the live aggregator: player, feeder, re-drive, control timeline."""
