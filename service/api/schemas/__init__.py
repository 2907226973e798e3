"""Marshmallow schemas: the shape of every request and response, and nothing below the edge."""
