"""Reliability tests (issue 6): nothing lost, nothing silently wrong. See docs/reliability.md."""
