"""Subscriptions to the hub Consents this payer discloses under (seed 000 steps 5, 10-12)."""
