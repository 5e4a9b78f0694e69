"""pqlbot's edges: settings, HTTP app, ingest parsing, Slack listeners, delivery, jobs, CLI."""
