"""Recipes: schema, loader and validator, sweep expansion, example recipes."""
