"""Streams layer: the Faust app, its topics, the draft and score agents, and the dashboard."""
