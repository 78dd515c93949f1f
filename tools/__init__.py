"""Developer tools: files generated from the Helm chart (tools/chart.py)."""
