"""Beyond one machine: the offline per-user stage on Ray."""
