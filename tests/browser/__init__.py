"""Browser tests: the web client (client/web) in Debian Chromium against a real circle serve."""
