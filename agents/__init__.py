"""Faust stream agents (see the pipeline issue); nothing here yet."""
