"""Development and test tools: local stand-ins for the outside world. Never used in production."""
