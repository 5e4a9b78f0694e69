"""Slack: the Bolt app, its listeners (thin), and argument parsing as Slack really sends text."""
