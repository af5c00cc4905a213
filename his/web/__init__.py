"""Blueprints of his: each module defining `bp` is registered by his.init_app."""
