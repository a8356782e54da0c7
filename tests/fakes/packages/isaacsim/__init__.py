"""Fake ``isaacsim`` (tests only): present so that seedlock's package check finds it."""
