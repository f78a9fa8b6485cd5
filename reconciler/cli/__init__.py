"""The command line: click commands and renderers. The only layer that prints."""
