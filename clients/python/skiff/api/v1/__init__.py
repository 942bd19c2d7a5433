"""Generated from proto/api/v1 by clients/python/generate.sh (`make proto`); do not edit."""
