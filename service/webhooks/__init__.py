"""Webhooks: their secrets (made, sealed with SECRET_KEY), the addresses they may reach, the
Standard Webhooks signature, and sending one attempt of a delivery. No Flask, no Celery."""
