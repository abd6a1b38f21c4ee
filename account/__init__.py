"""The account/ Pulumi project (see __main__.py); a package so mypy tells it from the stage
program's own __main__.py."""
