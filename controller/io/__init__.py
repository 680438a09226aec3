"""Reading documents from disk: the only place that parses YAML."""
